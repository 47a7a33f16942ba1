//! What the server answers, as data: the forward and reverse zones a
//! config asks for, a pure function of the config (`docs/dns.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, anyhow};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, PTR, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use ipnet::IpNet;
use tracing::warn;

use super::reverse::{pool_reverse_zones, reverse_name, reverse_zone};
use crate::config::{self, Config, canonical_name, in_zone};

/// SOA refresh, retry and expire, in seconds (informative: no secondaries).
pub const SOA_REFRESH: i32 = 3600;
pub const SOA_RETRY: i32 = 600;
pub const SOA_EXPIRE: i32 = 86_400;

/// One served zone: its origin, serial and every record (SOA included),
/// sorted by owner name and type, without duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub origin: Name,
    pub serial: u32,
    pub records: Vec<Record>,
}

/// What the server answers: the forward zones of `dns_server.zones`
/// and the reverse zones of the edge addresses, by origin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZoneSet {
    pub zones: Vec<Zone>,
}

impl ZoneSet {
    /// The zones' origins, without the trailing dot.
    pub fn origins(&self) -> Vec<String> {
        self.zones.iter().map(|z| display_name(&z.origin)).collect()
    }

    /// Distinct owner names across all zones (apexes included).
    pub fn names(&self) -> usize {
        self.zones
            .iter()
            .flat_map(|z| z.records.iter().map(|r| LowerName::new(&r.name)))
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// The records to serve for `config`; empty when it has no `dns_server`.
///
/// Fails only on a zone or nameserver that is not a valid DNS name (which
/// validation already refuses); an app name that is not one is skipped
/// with a warning.
pub fn zone_records(config: &Config) -> anyhow::Result<ZoneSet> {
    let Some(dns) = &config.dns_server else {
        return Ok(ZoneSet::default());
    };
    let ttl = dns.ttl;
    let mname = fqdn(&dns.nameserver).context("dns_server.nameserver")?;
    let default_rname = match dns.zones.first() {
        Some(zone) => format!("hostmaster.{zone}"),
        None => format!("hostmaster.{}", dns.nameserver),
    };

    // Origin (canonical, no trailing dot) -> RNAME.
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    for (k, zone) in dns.zones.iter().enumerate() {
        fqdn(zone).with_context(|| format!("dns_server.zones[{k}]"))?;
        origins.insert(zone.clone(), format!("hostmaster.{zone}"));
    }

    // (owner, rdata) pairs, owner canonical; duplicates are dropped later.
    let mut data: Vec<(String, RData)> = Vec::new();
    // Edge address -> the name its PTR gives: the first app's.
    let mut ptrs: BTreeMap<IpAddr, String> = BTreeMap::new();
    for app in &config.apps {
        let name = canonical_name(&app.dns.name);
        for &ip in &app.edge_addrs {
            data.push((name.clone(), address_rdata(ip)));
            if !name.starts_with("*.") {
                ptrs.entry(ip).or_insert_with(|| name.clone());
            }
        }
    }
    let nameserver_is_app = config
        .apps
        .iter()
        .any(|app| canonical_name(&app.dns.name) == dns.nameserver);
    if !nameserver_is_app && origins.keys().any(|z| in_zone(&dns.nameserver, z)) {
        let listen: BTreeSet<IpAddr> = dns
            .listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        if listen.is_empty() {
            warn!(
                nameserver = %dns.nameserver,
                "dns_server.nameserver is in a served zone but every listen address is \
                 unspecified: it gets no A/AAAA record"
            );
        }
        data.extend(
            listen
                .into_iter()
                .map(|ip| (dns.nameserver.clone(), address_rdata(ip))),
        );
    }

    // Reverse zones: the pools', then /24 or /64 for addresses outside all.
    let pool = &config.edge.address_pool;
    let pools = [pool.ipv4.map(IpNet::V4), pool.ipv6.map(IpNet::V6)];
    for zone in pools.into_iter().flatten().flat_map(pool_reverse_zones) {
        origins.entry(zone).or_insert_with(|| default_rname.clone());
    }
    for (&ip, name) in &ptrs {
        let owner = reverse_name(ip);
        if !origins.keys().any(|z| in_zone(&owner, z)) {
            let prefix = if ip.is_ipv4() { 24 } else { 64 };
            origins.insert(reverse_zone(ip, prefix), default_rname.clone());
        }
        match fqdn(name) {
            Ok(target) => data.push((owner, RData::PTR(PTR(target)))),
            Err(error) => warn!(%name, %error, "not a DNS name; the DNS server skips it"),
        }
    }

    // Each record in the most specific zone holding its owner.
    let mut contents: BTreeMap<String, BTreeMap<RrKey, (Name, Vec<RData>)>> = origins
        .keys()
        .map(|origin| (origin.clone(), BTreeMap::new()))
        .collect();
    for (owner, rdata) in data {
        let Some(zone) = origins
            .keys()
            .filter(|z| in_zone(&owner, z))
            .max_by_key(|z| z.len())
        else {
            continue; // outside every zone: validation warned about it
        };
        let name = match fqdn(&owner) {
            Ok(name) => name,
            Err(error) => {
                warn!(name = %owner, %error, "not a DNS name; the DNS server skips it");
                continue;
            }
        };
        let Some(records) = contents.get_mut(zone) else {
            continue;
        };
        let key = RrKey::new(LowerName::new(&name), rdata.record_type());
        let (_, rdatas) = records.entry(key).or_insert_with(|| (name, Vec::new()));
        if !rdatas.contains(&rdata) {
            rdatas.push(rdata);
        }
    }

    let mut zones = Vec::with_capacity(origins.len());
    for (origin_text, rname_text) in &origins {
        let origin = fqdn(origin_text)?;
        let rname = fqdn(rname_text)?;
        let mut records = contents.remove(origin_text).unwrap_or_default();
        records
            .entry(RrKey::new(LowerName::new(&origin), RecordType::NS))
            .or_insert_with(|| (origin.clone(), Vec::new()))
            .1
            .push(RData::NS(NS(mname.clone())));
        let serial = content_serial(&records, &mname, &rname, ttl);
        let soa = SOA::new(
            mname.clone(),
            rname,
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            ttl,
        );
        records.insert(
            RrKey::new(LowerName::new(&origin), RecordType::SOA),
            (origin.clone(), vec![RData::SOA(soa)]),
        );
        let records = records
            .into_values()
            .flat_map(|(name, rdatas)| {
                rdatas
                    .into_iter()
                    .map(move |rdata| Record::from_rdata(name.clone(), ttl, rdata))
            })
            .collect();
        zones.push(Zone {
            origin,
            serial,
            records,
        });
    }
    Ok(ZoneSet { zones })
}

/// The zone's serial: FNV-1a over its records (in key order) and the SOA
/// fields that are not the serial, folded to 32 bits.
fn content_serial(
    records: &BTreeMap<RrKey, (Name, Vec<RData>)>,
    mname: &Name,
    rname: &Name,
    ttl: u32,
) -> u32 {
    let mut text = format!("SOA {mname} {rname} {ttl}\n");
    for (name, rdatas) in records.values() {
        for rdata in rdatas {
            text.push_str(&format!("{name} {} {rdata}\n", rdata.record_type()));
        }
    }
    let hash = config::fnv1a_128(text.as_bytes());
    (0..4).fold(0u32, |acc, k| acc ^ (hash >> (32 * k)) as u32)
}

/// The absolute name of canonical `name` (no trailing dot).
fn fqdn(name: &str) -> anyhow::Result<Name> {
    Name::from_ascii(format!("{name}.")).map_err(|e| anyhow!("{name:?} is not a DNS name: {e}"))
}

/// `name` without the trailing dot.
pub(super) fn display_name(name: &Name) -> String {
    let text = name.to_ascii();
    match text.strip_suffix('.') {
        Some(bare) if !bare.is_empty() => bare.to_string(),
        _ => text,
    }
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}
