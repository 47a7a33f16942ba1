//! Wire constants the data path and its test fixtures read packets by, and
//! the 16-byte address form every map key uses.

/// EtherTypes (host order; the frame carries them big-endian).
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
/// 802.1Q VLAN tag (the inner tag of a QinQ frame).
pub const ETH_P_8021Q: u16 = 0x8100;
/// 802.1ad service tag (the outer tag of a QinQ frame).
pub const ETH_P_8021AD: u16 = 0x88A8;

/// Address families of `bpf_fib_lookup` and `bpf_sk_lookup`.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// IP protocol numbers the data path knows.
pub mod ip_proto {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// Protocols the parser tells apart without handling them.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
/// The IPv6 fragment extension header (a `next_hdr` value).
pub const IPPROTO_FRAGMENT: u8 = 44;

/// TCP header flag bits (byte 13).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The first 12 bytes of an IPv4-mapped IPv6 address.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Maps an IPv4 address (network order bytes) into the 16-byte form.
#[inline(always)]
pub const fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapped_matches_std() {
        assert_eq!(
            v4_mapped([192, 0, 2, 1])[..12],
            V4_MAPPED_PREFIX[..],
            "prefix"
        );
        assert_eq!(v4_mapped([192, 0, 2, 1])[12..], [192, 0, 2, 1]);
    }

    #[test]
    fn v4_mapped_is_what_std_maps_to() {
        let ip = std::net::Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(v4_mapped(ip.octets()), ip.to_ipv6_mapped().octets());
    }
}
