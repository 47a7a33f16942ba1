//! The DNS server's tests, by concern, and the fixtures they share: a
//! config with static, dynamic, wildcard and out-of-zone apps, and
//! queries asked of an [`Authority`] without a socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use hickory_server::proto::op::{Message, MessageType, Query};
use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use super::zone::display_name;
use super::*;
use crate::config::{self, Config, canonical_name};

mod answers;
mod malformed;
mod server;
mod zone;

const TTL: u32 = 60;
const ZONE: &str = "example.test";

/// ssh (tcp/22 and udp/53, one name, written with upper case and a
/// trailing dot, static addresses), mail (dynamic), a wildcard app
/// (dynamic), and an app outside the zone.
fn config_json() -> serde_json::Value {
    serde_json::json!({
        "edge": {
            "interfaces": ["eth0"],
            "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/62"}
        },
        "apps": [
            {
                "protocol": "tcp/22",
                "dns": {"type": "ADDRESS", "name": "SSH.Example.Test."},
                "origin_direct": ["tcp://192.0.2.1:22"],
                "edge_ips": {"type": "static", "ips": ["198.51.100.7", "2001:db8:e::7"]}
            },
            {
                "protocol": "udp/53",
                "dns": {"type": "ADDRESS", "name": "ssh.example.test"},
                "origin_direct": ["udp://192.0.2.1:53"],
                "edge_ips": {"type": "static", "ips": ["198.51.100.7", "2001:db8:e::7"]}
            },
            {
                "protocol": "tcp/25",
                "dns": {"type": "CNAME", "name": "mail.example.test"},
                "origin_direct": ["tcp://192.0.2.2:25"]
            },
            {
                "protocol": "tcp/443",
                "dns": {"type": "CNAME", "name": "*.apps.example.test"},
                "origin_direct": ["tcp://192.0.2.3:443"]
            },
            {
                "protocol": "tcp/80",
                "dns": {"type": "CNAME", "name": "www.elsewhere.test"},
                "origin_direct": ["tcp://192.0.2.4:80"]
            }
        ],
        "dns_server": {"listen": ["127.0.0.1:0"], "zones": [ZONE], "ttl": TTL}
    })
}

fn load(json: &serde_json::Value) -> Config {
    match config::load_str(&json.to_string(), false) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("config refused: {e}"),
    }
}

fn test_config() -> Config {
    load(&config_json())
}

fn authority(config: &Config) -> Authority {
    Authority::from_config(config).expect("authority")
}

fn app_addrs(config: &Config, name: &str) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let app = config
        .apps
        .iter()
        .find(|a| canonical_name(&a.dns.name) == name)
        .expect("app");
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for ip in &app.edge_addrs {
        match ip {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    (v4, v6)
}

fn src() -> SocketAddr {
    "192.0.2.99:5353".parse().expect("address")
}

fn query_message(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(Name::from_str(name).expect("name"), qtype));
    message
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    query_message(0x4242, name, qtype).to_vec().expect("encode")
}

async fn ask_bytes(authority: &Authority, bytes: &[u8]) -> Option<Message> {
    let reply = authority.answer(bytes, src()).await?;
    Some(Message::from_vec(&reply).expect("the reply parses"))
}

async fn ask(authority: &Authority, name: &str, qtype: RecordType) -> Message {
    let bytes = query(name, qtype);
    let reply = ask_bytes(authority, &bytes).await.expect("a reply");
    assert_eq!(reply.metadata.id, 0x4242);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

fn rdatas(records: &[Record]) -> Vec<RData> {
    records.iter().map(|r| r.data.clone()).collect()
}

fn name(text: &str) -> Name {
    Name::from_str(text).expect("name")
}

fn soa_of(records: &[Record]) -> Option<SOA> {
    records.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.clone()),
        _ => None,
    })
}

/// A 12-byte header: id 0x4242, the given flags byte, qdcount.
fn header(flags: u8, qdcount: u16) -> Vec<u8> {
    let mut bytes = vec![0x42, 0x42, flags, 0x00];
    bytes.extend_from_slice(&qdcount.to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    bytes
}

/// QNAME ssh.example.test, type A, class IN.
fn question() -> Vec<u8> {
    let mut bytes = Vec::new();
    for label in ["ssh", "example", "test"] {
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
    bytes
}

/// The zone of `zones` with origin `origin` (no trailing dot).
fn zone_named<'z>(zones: &'z ZoneSet, origin: &str) -> &'z Zone {
    zones
        .zones
        .iter()
        .find(|z| display_name(&z.origin) == origin)
        .unwrap_or_else(|| panic!("no zone {origin} in {:?}", zones.origins()))
}

/// The reverse zones of the test config: the /62 pool is four /64s.
const V6_ZONES: [&str; 4] = [
    "0.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    "1.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    "2.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    "3.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
];
const V4_ZONE: &str = "100.51.198.in-addr.arpa";
