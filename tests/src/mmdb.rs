//! A small MaxMind DB (`.mmdb`) writer, so tests can build GeoIP country and
//! ASN databases on the fly. Format: <https://maxmind.github.io/MaxMind-DB/>.
//!
//! A file is `search tree | 16 zero bytes | data section | metadata marker |
//! metadata map`. The search tree is a binary trie over the 128 bits of an
//! IPv6 address (IPv4 networks live under `::/96`, where readers look them
//! up). Each node is two big-endian 32-bit records, for bit 0 and bit 1; a
//! record is another node's number (`< node_count`), "no data"
//! (`== node_count`), or a data pointer (`node_count + 16 + offset` into the
//! data section).

use std::path::Path;

use anyhow::Context;
use ipnet::IpNet;

/// Marks the start of the metadata map; readers search for its last occurrence.
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
/// The zero bytes between the search tree and the data section.
const DATA_SECTION_SEPARATOR: [u8; 16] = [0; 16];
const RECORD_SIZE_BITS: u16 = 32;

/// A data section value. Type numbers are the format's; readers check them
/// strictly (a `u16` field must be encoded as type 5, not 6).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Type 2, UTF-8 string.
    String(String),
    /// Type 5.
    U16(u16),
    /// Type 6.
    U32(u32),
    /// Type 9 (extended).
    U64(u64),
    /// Type 11 (extended).
    Array(Vec<Value>),
    /// Type 7, string keys.
    Map(Vec<(String, Value)>),
}

/// A map value from `(key, value)` pairs, kept in the given order.
pub fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(entries.map(|(key, value)| (key.to_owned(), value)).into())
}

/// A GeoLite2-Country record: `{"country": {"iso_code": X}}`.
pub fn geolite2_country(iso_code: &str) -> Value {
    let country = map([("iso_code", Value::String(iso_code.into()))]);
    map([("country", country)])
}

/// An ip-location-db country record: `{"country_code": X}`.
pub fn location_db_country(code: &str) -> Value {
    map([("country_code", Value::String(code.into()))])
}

/// A GeoLite2-ASN record.
pub fn asn(number: u32, org: &str) -> Value {
    map([
        ("autonomous_system_number", Value::U32(number)),
        ("autonomous_system_organization", Value::String(org.into())),
    ])
}

/// A search tree node before numbering.
#[derive(Clone)]
enum Node {
    Empty,
    /// Index into `Writer::records`.
    Data(usize),
    /// Children for bit 0 and bit 1.
    Branch(Box<[Node; 2]>),
}

/// Builds an IPv6 database (IPv4 networks under `::/96`) with 32-bit records.
pub struct Writer {
    database_type: String,
    root: Node,
    /// Distinct records; each is encoded once in the data section.
    records: Vec<Value>,
}

impl Writer {
    /// An empty database; `database_type` is e.g. `"GeoLite2-Country"`.
    pub fn new(database_type: &str) -> Writer {
        Writer {
            database_type: database_type.to_owned(),
            root: Node::Empty,
            records: Vec::new(),
        }
    }

    /// Sets `record` for every address of `net`, replacing what earlier
    /// inserts stored there; the rest of a split network keeps its record.
    pub fn insert(&mut self, net: IpNet, record: Value) {
        let (key, prefix_len) = match net {
            IpNet::V4(v4) => (u128::from(u32::from(v4.network())), 96 + v4.prefix_len()),
            IpNet::V6(v6) => (u128::from(v6.network()), v6.prefix_len()),
        };
        let index = match self.records.iter().position(|known| *known == record) {
            Some(index) => index,
            None => {
                self.records.push(record);
                self.records.len() - 1
            }
        };
        let mut node = &mut self.root;
        for depth in 0..prefix_len {
            if !matches!(node, Node::Branch(_)) {
                // Both halves of the split network keep the old record.
                let old = std::mem::replace(node, Node::Empty);
                *node = Node::Branch(Box::new([old.clone(), old]));
            }
            let Node::Branch(children) = node else {
                unreachable!("split above")
            };
            node = &mut children[usize::from((key >> (127 - depth)) & 1 == 1)];
        }
        *node = Node::Data(index);
    }

    /// The database file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut data = Vec::new();
        let offsets: Vec<usize> = (self.records.iter())
            .map(|record| {
                let offset = data.len();
                encode(record, &mut data);
                offset
            })
            .collect();

        // The root must be a node even when one record covers everything.
        let whole;
        let root: &[Node; 2] = match &self.root {
            Node::Branch(children) => children,
            leaf => {
                whole = [leaf.clone(), leaf.clone()];
                &whole
            }
        };
        // Breadth-first, so a node's number is its position in `nodes`.
        let mut nodes = vec![root];
        let mut next = 0;
        while let Some(node) = nodes.get(next) {
            for child in node.iter() {
                if let Node::Branch(children) = child {
                    nodes.push(children);
                }
            }
            next += 1;
        }
        let node_count = nodes.len();

        let mut out = Vec::with_capacity(node_count * 8 + 16 + data.len() + 256);
        let mut next_branch = 1;
        for node in &nodes {
            for child in node.iter() {
                let record = match child {
                    Node::Empty => node_count,
                    Node::Data(index) => {
                        node_count + DATA_SECTION_SEPARATOR.len() + offsets[*index]
                    }
                    Node::Branch(_) => {
                        next_branch += 1;
                        next_branch - 1
                    }
                };
                let record = u32::try_from(record).expect("database too large for 32-bit records");
                out.extend(record.to_be_bytes());
            }
        }
        out.extend(DATA_SECTION_SEPARATOR);
        out.extend(data);
        out.extend(METADATA_MARKER);
        encode(&self.metadata(node_count), &mut out);
        out
    }

    /// Writes the database to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.to_bytes())
            .with_context(|| format!("writing MaxMind DB {}", path.display()))
    }

    fn metadata(&self, node_count: usize) -> Value {
        let build_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let node_count = u32::try_from(node_count).expect("node count fits 32-bit records");
        let description = format!("{} built by the integration tests", self.database_type);
        map([
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(build_epoch)),
            ("database_type", Value::String(self.database_type.clone())),
            ("description", map([("en", Value::String(description))])),
            ("ip_version", Value::U16(6)),
            ("languages", Value::Array(vec![Value::String("en".into())])),
            ("node_count", Value::U32(node_count)),
            ("record_size", Value::U16(RECORD_SIZE_BITS)),
        ])
    }
}

/// Appends `value` in the data section encoding.
fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(s) => encode_str(out, s),
        Value::U16(n) => encode_uint(out, 5, u64::from(*n)),
        Value::U32(n) => encode_uint(out, 6, u64::from(*n)),
        Value::U64(n) => encode_uint(out, 9, *n),
        Value::Array(items) => {
            control(out, 11, items.len());
            items.iter().for_each(|item| encode(item, out));
        }
        Value::Map(entries) => {
            control(out, 7, entries.len());
            for (key, value) in entries {
                encode_str(out, key);
                encode(value, out);
            }
        }
    }
}

fn encode_str(out: &mut Vec<u8>, s: &str) {
    control(out, 2, s.len());
    out.extend(s.as_bytes());
}

/// Unsigned integers are big-endian without leading zero bytes (0 is empty).
fn encode_uint(out: &mut Vec<u8>, type_num: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let payload = &bytes[n.leading_zeros() as usize / 8..];
    control(out, type_num, payload.len());
    out.extend(payload);
}

/// The control byte: type in the top 3 bits, size in the low 5. Types above
/// 7 put 0 there and `type - 7` in the next byte. Sizes from 29 on use the
/// size bits 29, 30, 31 followed by `size - 29`, `size - 285` or
/// `size - 65821` in 1, 2 or 3 bytes.
fn control(out: &mut Vec<u8>, type_num: u8, size: usize) {
    let (size_bits, extra) = match size {
        0..29 => (size as u8, Vec::new()),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => {
            assert!(
                size < 65_821 + (1 << 24),
                "value of {size} bytes is too long"
            );
            (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
        }
    };
    if type_num <= 7 {
        out.push((type_num << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend(extra);
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::{Reader, geoip2};
    use std::net::IpAddr;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn reader(writer: &Writer) -> anyhow::Result<Reader<Vec<u8>>> {
        Ok(Reader::from_source(writer.to_bytes())?)
    }

    /// The ISO code at `addr`, or None if it has no data.
    fn iso_at(reader: &Reader<Vec<u8>>, addr: &str) -> anyhow::Result<Option<String>> {
        let country = reader.lookup(ip(addr))?.decode::<geoip2::Country>()?;
        Ok(country.and_then(|c| c.country.iso_code.map(str::to_owned)))
    }

    /// Every network with data, with its ISO code, in tree order.
    fn networks(reader: &Reader<Vec<u8>>) -> anyhow::Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        for lookup in reader.networks(Default::default())? {
            let lookup = lookup?;
            let country = lookup
                .decode::<geoip2::Country>()?
                .context("network without data")?;
            let iso = country.country.iso_code.unwrap_or_default().to_owned();
            found.push((lookup.network()?.to_string(), iso));
        }
        Ok(found)
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        (expected.iter())
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn ipv4_and_ipv6_lookups_hit_their_records() -> anyhow::Result<()> {
        let mut writer = Writer::new("GeoLite2-Country");
        writer.insert(net("10.0.0.0/8"), geolite2_country("DE"));
        writer.insert(net("192.0.2.0/24"), geolite2_country("NL"));
        writer.insert(net("2001:db8::/32"), geolite2_country("FR"));
        let reader = reader(&writer)?;

        assert_eq!(iso_at(&reader, "10.1.2.3")?.as_deref(), Some("DE"));
        assert_eq!(iso_at(&reader, "192.0.2.255")?.as_deref(), Some("NL"));
        assert_eq!(iso_at(&reader, "2001:db8:ffff::1")?.as_deref(), Some("FR"));
        let v4 = reader.lookup(ip("10.1.2.3"))?.network()?;
        assert_eq!(v4.to_string(), "10.0.0.0/8");
        let v6 = reader.lookup(ip("2001:db8::1"))?.network()?;
        assert_eq!(v6.to_string(), "2001:db8::/32");
        Ok(())
    }

    #[test]
    fn addresses_outside_inserted_networks_have_no_data() -> anyhow::Result<()> {
        let mut writer = Writer::new("GeoLite2-Country");
        writer.insert(net("10.0.0.0/8"), geolite2_country("DE"));
        writer.insert(net("2001:db8::/32"), geolite2_country("FR"));
        let reader = reader(&writer)?;

        // IPv4 lives only under ::/96: no ::ffff:0:0/96 or 6to4 aliases.
        for addr in [
            "11.0.0.1",
            "9.255.255.255",
            "2001:db9::1",
            "::ffff:10.1.2.3",
            "::",
        ] {
            assert!(!reader.lookup(ip(addr))?.has_data(), "{addr} has data");
        }
        let empty = Reader::from_source(Writer::new("GeoLite2-ASN").to_bytes())?;
        empty.verify()?;
        assert!(!empty.lookup(ip("10.1.2.3"))?.has_data());
        assert!(!empty.lookup(ip("2001:db8::1"))?.has_data());
        Ok(())
    }

    #[test]
    fn nested_insert_splits_and_later_inserts_override() -> anyhow::Result<()> {
        let mut writer = Writer::new("GeoLite2-Country");
        writer.insert(net("10.0.0.0/8"), geolite2_country("DE"));
        writer.insert(net("10.1.0.0/16"), geolite2_country("AT"));
        writer.insert(net("2001:db8::/32"), geolite2_country("FR"));
        let split = reader(&writer)?;
        assert_eq!(iso_at(&split, "10.1.255.255")?.as_deref(), Some("AT"));
        assert_eq!(iso_at(&split, "10.0.255.255")?.as_deref(), Some("DE"));
        assert_eq!(iso_at(&split, "10.2.0.0")?.as_deref(), Some("DE"));
        assert_eq!(iso_at(&split, "10.255.0.1")?.as_deref(), Some("DE"));
        // Depth-first, bit 0 first: IPv4 (under ::/96) before 2001:db8::/32.
        let expected = pairs(&[
            ("10.0.0.0/16", "DE"),
            ("10.1.0.0/16", "AT"),
            ("10.2.0.0/15", "DE"),
            ("10.4.0.0/14", "DE"),
            ("10.8.0.0/13", "DE"),
            ("10.16.0.0/12", "DE"),
            ("10.32.0.0/11", "DE"),
            ("10.64.0.0/10", "DE"),
            ("10.128.0.0/9", "DE"),
            ("2001:db8::/32", "FR"),
        ]);
        assert_eq!(networks(&split)?, expected);

        // A later, wider insert replaces everything it covers.
        writer.insert(net("10.0.0.0/8"), geolite2_country("CH"));
        let replaced = reader(&writer)?;
        assert_eq!(iso_at(&replaced, "10.1.2.3")?.as_deref(), Some("CH"));
        let expected = pairs(&[("10.0.0.0/8", "CH"), ("2001:db8::/32", "FR")]);
        assert_eq!(networks(&replaced)?, expected);
        Ok(())
    }

    #[test]
    fn verify_passes_and_metadata_describes_the_tree() -> anyhow::Result<()> {
        let mut writer = Writer::new("GeoLite2-ASN");
        writer.insert(net("10.0.0.0/8"), asn(64500, "Example"));
        let reader = reader(&writer)?;
        reader.verify()?;

        let meta = reader.metadata();
        assert_eq!(
            (
                meta.binary_format_major_version,
                meta.binary_format_minor_version
            ),
            (2, 0)
        );
        assert_eq!((meta.ip_version, meta.record_size), (6, 32));
        assert_eq!(meta.database_type, "GeoLite2-ASN");
        assert!(meta.description.contains_key("en"));
        assert_eq!(meta.languages, ["en"]);
        assert!(meta.build_epoch > 1_700_000_000);
        // One node per bit of ::10.0.0.0/104, none shared or wasted.
        assert_eq!(meta.node_count, 104);
        Ok(())
    }

    #[test]
    fn record_shapes_decode_as_real_databases_do() -> anyhow::Result<()> {
        let mut writer = Writer::new("test");
        writer.insert(net("10.0.0.0/8"), geolite2_country("DE"));
        writer.insert(net("11.0.0.0/8"), location_db_country("FR"));
        writer.insert(net("2001:db8::/32"), asn(64500, "Example Org"));
        let reader = reader(&writer)?;

        let geolite = reader.lookup(ip("10.0.0.1"))?;
        let country = geolite.decode::<geoip2::Country>()?.context("geolite2")?;
        assert_eq!(country.country.iso_code, Some("DE"));
        let raw = geolite.decode::<serde_json::Value>()?;
        assert_eq!(
            raw,
            Some(serde_json::json!({"country": {"iso_code": "DE"}}))
        );

        let location_db = reader
            .lookup(ip("11.0.0.1"))?
            .decode::<serde_json::Value>()?;
        assert_eq!(location_db, Some(serde_json::json!({"country_code": "FR"})));

        let asn = reader
            .lookup(ip("2001:db8::1"))?
            .decode::<geoip2::Asn>()?
            .context("asn")?;
        assert_eq!(asn.autonomous_system_number, Some(64500));
        assert_eq!(asn.autonomous_system_organization, Some("Example Org"));
        Ok(())
    }

    #[test]
    fn long_strings_and_integer_widths_round_trip() -> anyhow::Result<()> {
        // Each size-encoding boundary, and integers of 0 to 4 bytes.
        let lengths = [0, 28, 29, 284, 285, 65_820, 65_821, 70_000];
        let numbers = [0, 1, 255, 256, 65_536, u32::MAX, 7, 64_500];
        let mut writer = Writer::new("GeoLite2-ASN");
        for (i, (len, number)) in lengths.iter().zip(numbers).enumerate() {
            let org: String = ('a'..='z').cycle().take(*len).collect();
            writer.insert(net(&format!("10.{i}.0.0/16")), asn(number, &org));
        }
        let reader = reader(&writer)?;
        reader.verify()?;
        for (i, (len, number)) in lengths.iter().zip(numbers).enumerate() {
            let lookup = reader.lookup(ip(&format!("10.{i}.1.1")))?;
            let asn = lookup.decode::<geoip2::Asn>()?.context("asn")?;
            assert_eq!(asn.autonomous_system_number, Some(number));
            let org = asn.autonomous_system_organization.context("org")?;
            assert_eq!(org.len(), *len);
            assert!(org.chars().zip(('a'..='z').cycle()).all(|(a, b)| a == b));
        }
        Ok(())
    }

    #[test]
    fn identical_records_are_stored_once() -> anyhow::Result<()> {
        let mut writer = Writer::new("GeoLite2-Country");
        writer.insert(net("10.0.0.0/8"), geolite2_country("DE"));
        writer.insert(net("2001:db8::/32"), geolite2_country("FR"));
        writer.insert(net("192.0.2.0/24"), geolite2_country("DE"));
        let reader = reader(&writer)?;
        let offset = |addr| reader.lookup(ip(addr)).map(|lookup| lookup.offset());
        assert!(offset("10.0.0.1")?.is_some());
        assert_eq!(offset("10.0.0.1")?, offset("192.0.2.1")?);
        assert_ne!(offset("10.0.0.1")?, offset("2001:db8::1")?);
        Ok(())
    }

    #[test]
    fn write_creates_a_readable_file() -> anyhow::Result<()> {
        let mut writer = Writer::new("GeoLite2-Country");
        writer.insert(net("10.0.0.0/8"), geolite2_country("DE"));
        let path = crate::scratch_dir().join("mmdb-write.mmdb");
        writer.write(&path)?;
        let reader = Reader::open_readfile(&path)?;
        assert_eq!(iso_at(&reader, "10.0.0.1")?.as_deref(), Some("DE"));
        assert!(writer.write(Path::new("/nonexistent-dir/x.mmdb")).is_err());
        Ok(())
    }
}
