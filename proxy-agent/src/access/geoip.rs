//! ASN and country access rules -> IP prefixes, from a GeoIP database.
//!
//! Two formats:
//! - MaxMind DB (`.mmdb`, any other extension): GeoLite2-Country and
//!   GeoLite2-ASN, and ip-location-db's mmdb files. A country is read from
//!   `country.iso_code` (GeoLite2) or `country_code` (ip-location-db); an ASN
//!   from `autonomous_system_number`.
//! - ip-location-db CSV (`.csv`): `first_ip,last_ip,country_code` or
//!   `first_ip,last_ip,asn[,organisation]`.
//!
//! A network whose record names no country counts as `XX` (unknown); `T1`
//! (Tor) matches where the database uses that code.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, hash_map::Entry},
    fs,
    net::IpAddr,
    path::Path,
};

use anyhow::{Context as _, anyhow, bail};
use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use maxminddb::Reader;
use serde::Deserialize;

use crate::config::model::{AccessRule, Config, RuleTarget};

/// The prefixes of every country and ASN the rules name (empty when the
/// database has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoPrefixes {
    pub countries: BTreeMap<String, Vec<IpNet>>,
    pub asns: BTreeMap<u32, Vec<IpNet>>,
}

/// Reads the databases the config's rules need (none when no rule names
/// an ASN or a country). An unreadable or corrupt database is an error
/// naming the setting and the file.
pub fn expand(config: &Config) -> anyhow::Result<GeoPrefixes> {
    let (countries, asns) = wanted(&config.access_rules);
    let mut out = GeoPrefixes::default();
    if !countries.is_empty() {
        let path = config
            .edge
            .geoip
            .country_db
            .as_deref()
            .ok_or_else(|| anyhow!("country rules need edge.geoip.country_db"))?;
        out.countries = country_prefixes(path, &countries).with_context(|| {
            let rules = users(&config.access_rules, |t| {
                matches!(t, RuleTarget::Country(_))
            });
            format!("edge.geoip.country_db {} (for {rules})", path.display())
        })?;
    }
    if !asns.is_empty() {
        let path = config
            .edge
            .geoip
            .asn_db
            .as_deref()
            .ok_or_else(|| anyhow!("ASN rules need edge.geoip.asn_db"))?;
        out.asns = asn_prefixes(path, &asns).with_context(|| {
            let rules = users(&config.access_rules, |t| matches!(t, RuleTarget::Asn(_)));
            format!("edge.geoip.asn_db {} (for {rules})", path.display())
        })?;
    }
    Ok(out)
}

/// `access_rules[i], access_rules[j]`: the rules whose target `is`.
fn users(rules: &[AccessRule], is: impl Fn(&RuleTarget) -> bool) -> String {
    let names: Vec<String> = rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| is(&rule.target))
        .map(|(i, rule)| rule.name(i))
        .collect();
    names.join(", ")
}

/// The countries and ASNs the rules name.
fn wanted(rules: &[AccessRule]) -> (BTreeSet<String>, BTreeSet<u32>) {
    let mut countries = BTreeSet::new();
    let mut asns = BTreeSet::new();
    for rule in rules {
        match &rule.target {
            RuleTarget::Country(code) => {
                countries.insert(code.clone());
            }
            RuleTarget::Asn(asn) => {
                asns.insert(*asn);
            }
            RuleTarget::Ip(_) | RuleTarget::Range(_) => {}
        }
    }
    (countries, asns)
}

/// Every network of the countries in `wanted`.
pub fn country_prefixes(
    path: &Path,
    wanted: &BTreeSet<String>,
) -> anyhow::Result<BTreeMap<String, Vec<IpNet>>> {
    prefixes(
        path,
        wanted,
        |value| Ok(if value.is_empty() { UNKNOWN } else { value }.to_owned()),
        |lookup| {
            let record: Option<CountryRecord> = lookup.decode()?;
            Ok(Some(record.unwrap_or_default().code().to_owned()))
        },
    )
}

/// Every network of the ASNs in `wanted`.
pub fn asn_prefixes(
    path: &Path,
    wanted: &BTreeSet<u32>,
) -> anyhow::Result<BTreeMap<u32, Vec<IpNet>>> {
    prefixes(
        path,
        wanted,
        |value| {
            value
                .parse()
                .map_err(|_| anyhow!("ASN {value:?} is not a number"))
        },
        |lookup| {
            let record: Option<AsnRecord> = lookup.decode()?;
            Ok(record.and_then(|r| r.autonomous_system_number))
        },
    )
}

/// The networks of each key in `wanted`, from a CSV file (the key from the
/// third column, by `csv_key`) or a MaxMind DB (the key from each record,
/// by `record_key`).
fn prefixes<K: Ord + Clone>(
    path: &Path,
    wanted: &BTreeSet<K>,
    csv_key: impl Fn(&str) -> anyhow::Result<K>,
    record_key: impl FnMut(&maxminddb::LookupResult<'_, Vec<u8>>) -> anyhow::Result<Option<K>>,
) -> anyhow::Result<BTreeMap<K, Vec<IpNet>>> {
    let mut out: BTreeMap<K, Vec<IpNet>> = wanted.iter().map(|k| (k.clone(), Vec::new())).collect();
    if is_csv(path) {
        for_each_csv_range(path, |first, last, value| {
            if let Some(nets) = out.get_mut(&csv_key(value)?) {
                nets.extend(range_nets(first, last));
            }
            Ok(())
        })?;
    } else {
        let reader = open(path)?;
        for_each_network(&reader, record_key, |key, net| {
            if let Some(nets) = out.get_mut(key) {
                nets.push(net);
            }
        })?;
    }
    Ok(out)
}

const UNKNOWN: &str = "XX";

#[derive(Deserialize, Default)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

impl CountryRecord<'_> {
    fn code(&self) -> &str {
        self.country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or(self.country_code)
            .filter(|c| !c.is_empty())
            .unwrap_or(UNKNOWN)
    }
}

#[derive(Deserialize, Default)]
struct AsnRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

fn open(path: &Path) -> anyhow::Result<Reader<Vec<u8>>> {
    let bytes = fs::read(path).context("reading the database")?;
    Reader::from_source(bytes).context("not a MaxMind DB file (or a corrupt one)")
}

/// The smallest set of prefixes that covers `first..=last` (same family).
fn range_nets(first: IpAddr, last: IpAddr) -> Vec<IpNet> {
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect(),
        (IpAddr::V6(a), IpAddr::V6(b)) => Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect(),
        _ => Vec::new(),
    }
}

/// Calls `add(key, network)` for each network of the database whose record
/// `key` maps to a key. Networks share few records (a country's networks
/// all point at one), so each record is decoded once, by its offset.
fn for_each_network<K>(
    reader: &Reader<Vec<u8>>,
    mut key: impl FnMut(&maxminddb::LookupResult<'_, Vec<u8>>) -> anyhow::Result<Option<K>>,
    mut add: impl FnMut(&K, IpNet),
) -> anyhow::Result<()> {
    let mut keys: HashMap<usize, Option<K>> = HashMap::new();
    for item in reader
        .networks(Default::default())
        .context("walking the database")?
    {
        let lookup = item.context("corrupt database")?;
        let Some(offset) = lookup.offset() else {
            continue;
        };
        let network = lookup.network().context("corrupt database")?;
        let net = IpNet::new(network.network(), network.prefix())
            .map_err(|_| anyhow!("corrupt database: bad network {network}"))?;
        let k = match keys.entry(offset) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(key(&lookup)?),
        };
        if let Some(k) = k {
            add(k, net);
        }
    }
    Ok(())
}

/// Calls `f(first, last, third column)` for each data line of an
/// ip-location-db CSV file.
fn for_each_csv_range(
    path: &Path,
    mut f: impl FnMut(IpAddr, IpAddr, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let text = fs::read_to_string(path).context("reading the database")?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(4, ',');
        let mut next = || fields.next().map(str::trim).unwrap_or("");
        let (first, last, value) = (next(), next(), next());
        let parsed = (first.parse::<IpAddr>(), last.parse::<IpAddr>());
        let (Ok(first), Ok(last)) = parsed else {
            // A header line is allowed, once, at the top.
            if n == 0 {
                continue;
            }
            bail!("line {}: expected first_ip,last_ip,value: {line:?}", n + 1);
        };
        if first.is_ipv4() != last.is_ipv4() || first > last {
            bail!("line {}: {first}-{last} is not a range", n + 1);
        }
        f(first, last, value).with_context(|| format!("line {}", n + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn csv(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("geoip-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn csv_country_ranges_become_prefixes() {
        let path = csv(
            "country.csv",
            "ip_range_start,ip_range_end,country_code\n\
             1.0.0.0,1.0.0.255,AU\n\
             1.0.1.0,1.0.3.255,CN\n\
             2001:db8::,2001:db8::ffff,AU\n\
             9.9.9.0,9.9.9.255,\n",
        );
        let wanted: BTreeSet<String> = ["AU", "CN", "XX", "FR"].map(String::from).into();
        let out = country_prefixes(&path, &wanted).unwrap();
        assert_eq!(out["AU"], nets(&["1.0.0.0/24", "2001:db8::/112"]));
        assert_eq!(out["CN"], nets(&["1.0.1.0/24", "1.0.2.0/23"]));
        assert_eq!(out["XX"], nets(&["9.9.9.0/24"]));
        assert!(out["FR"].is_empty());
    }

    #[test]
    fn csv_asn_ranges_keep_only_wanted_asns() {
        let path = csv(
            "asn.csv",
            "1.1.1.0,1.1.1.255,13335,\"Cloudflare, Inc.\"\n8.8.8.0,8.8.8.255,15169,Google\n",
        );
        let out = asn_prefixes(&path, &[13335].into()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[&13335], nets(&["1.1.1.0/24"]));
    }

    #[test]
    fn bad_csv_lines_name_the_line() {
        let path = csv("bad.csv", "1.0.0.0,1.0.0.255,AU\n1.0.0.9,1.0.0.1,AU\n");
        let err = country_prefixes(&path, &["AU".to_string()].into()).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        let path = csv("bad-asn.csv", "1.0.0.0,1.0.0.255,AS-x\n");
        let err = asn_prefixes(&path, &[1].into()).unwrap_err();
        assert!(format!("{err:#}").contains("not a number"), "{err:#}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let path = csv("garbage.mmdb", "this is not a MaxMind DB");
        let err = country_prefixes(&path, &["AU".to_string()].into()).unwrap_err();
        assert!(format!("{err:#}").contains("not a MaxMind DB"), "{err:#}");
        let missing = Path::new("/nonexistent/geo.mmdb");
        assert!(asn_prefixes(missing, &[1].into()).is_err());
    }

    #[test]
    fn country_record_shapes() {
        let geolite = CountryRecord {
            country: Some(IsoCode {
                iso_code: Some("DE"),
            }),
            country_code: None,
        };
        let location_db = CountryRecord {
            country: None,
            country_code: Some("FR"),
        };
        assert_eq!(geolite.code(), "DE");
        assert_eq!(location_db.code(), "FR");
        assert_eq!(CountryRecord::default().code(), "XX");
    }
}
