//! Reverse DNS names: an address's PTR owner name and the reverse zones
//! of an address pool (why those zones: `docs/dns.md`).

use std::net::IpAddr;

use ipnet::IpNet;

/// The PTR owner of `ip`: `4.3.2.1.in-addr.arpa`, or the 32 reversed
/// nibbles under `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    reverse_zone(ip, if ip.is_ipv4() { 32 } else { 128 })
}

/// Most reverse zones served for one pool (see [`pool_reverse_zones`]).
pub const MAX_POOL_REVERSE_ZONES: usize = 256;

/// The reverse zones served for the address pool `net`: its prefix length
/// rounded up to whole labels (8 bits for IPv4, 4 for IPv6), one zone per
/// resulting prefix, so that the zones cover the pool and nothing else: a
/// /22 is four /24 zones, a /62 four /64s; a prefix on a boundary is its
/// own zone. Exceptions, rounded down to one zone instead: an IPv4 prefix
/// longer than /24 (its /24: no zone per address), and more than
/// [`MAX_POOL_REVERSE_ZONES`] zones (which 8- and 4-bit labels never
/// reach: rounding up adds at most 7 bits).
pub fn pool_reverse_zones(net: IpNet) -> Vec<String> {
    let (label_bits, max_len) = match net {
        IpNet::V4(_) => (8, 24),
        IpNet::V6(_) => (4, 128),
    };
    let len = net.prefix_len();
    let up = len.div_ceil(label_bits) * label_bits;
    // `up - len` is less than `label_bits`: no overflow.
    let count = 1usize << (up - len);
    if up == len || len > max_len || count > MAX_POOL_REVERSE_ZONES {
        return vec![reverse_zone(net.network(), len.min(max_len))];
    }
    match net.subnets(up) {
        Ok(subnets) => subnets.map(|sub| reverse_zone(sub.network(), up)).collect(),
        // `up` lies between `len` and the family's maximum.
        Err(_) => vec![reverse_zone(net.network(), len)],
    }
}

/// The reverse zone covering `ip/prefix_len`, the prefix rounded down to
/// whole labels (8 bits for IPv4, 4 for IPv6).
pub fn reverse_zone(ip: IpAddr, prefix_len: u8) -> String {
    let (labels, suffix): (Vec<String>, &str) = match ip {
        IpAddr::V4(v4) => {
            let n = usize::from(prefix_len.min(32) / 8);
            let labels = v4.octets()[..n].iter().rev().map(u8::to_string).collect();
            (labels, "in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let n = usize::from(prefix_len.min(128) / 4);
            let nibbles: Vec<u8> = v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0x0f])
                .collect();
            let labels = nibbles[..n]
                .iter()
                .rev()
                .map(|nibble| format!("{nibble:x}"))
                .collect();
            (labels, "ip6.arpa")
        }
    };
    if labels.is_empty() {
        suffix.to_string()
    } else {
        format!("{}.{suffix}", labels.join("."))
    }
}
