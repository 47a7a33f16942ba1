//! A query to the embedded DNS server: any bytes at all reach
//! `Authority::answer`, against a small fixed config (two apps, one of
//! them a wildcard; one zone; both reverse zones). `answer` is not the
//! server's socket loop: it repeats hickory's decoding of a UDP message
//! (no header: dropped; QR=1: dropped; undecodable: FORMERR), hands the
//! request to the same request handler the listeners use (`Authority`:
//! refusals, the wildcard and NODATA answers, then hickory's catalog), and
//! encodes the reply as for UDP (the EDNS payload size or 512 bytes).
//! TCP's length-prefixed framing is not fuzzed.
//! It must never panic; a reply must parse back as a DNS response, with
//! the query's id whenever the query had one.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use proxy_agent::dns::Authority;

const CONFIG: &str = r#"{
  "edge": {
    "interfaces": ["eth0"],
    "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}
  },
  "apps": [
    {
      "protocol": "tcp/25",
      "dns": {"type": "ADDRESS", "name": "Mail.Example.Test."},
      "origin_direct": ["tcp://192.0.2.1:25"],
      "edge_ips": {"type": "static", "ips": ["198.51.100.7", "2001:db8:e::7"]}
    },
    {
      "protocol": "tcp/443",
      "dns": {"type": "CNAME", "name": "*.apps.example.test"},
      "origin_direct": ["tcp://192.0.2.2:443"]
    }
  ],
  "dns_server": {"listen": ["192.0.2.53"], "zones": ["example.test"], "ttl": 30}
}"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    authority: Authority,
    src: SocketAddr,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let loaded = proxy_agent::config::load_str(CONFIG, false).expect("fuzz config");
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("tokio runtime"),
            authority: Authority::from_config(&loaded.config).expect("zones"),
            src: "192.0.2.99:5353".parse().expect("address"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some(reply) = f.runtime.block_on(f.authority.answer(data, f.src)) else {
        return;
    };
    let message = Message::from_vec(&reply).expect("the reply parses");
    assert_eq!(message.metadata.message_type, MessageType::Response);
    if let [hi, lo, ..] = *data {
        assert_eq!(message.metadata.id, u16::from_be_bytes([hi, lo]));
    }
});
