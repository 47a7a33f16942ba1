//! The edge's own addresses and the origin-facing sources, filled by the
//! agent: `POOLS` (the prefixes apps take edge addresses from) makes a
//! packet to one of them that no listener matches an `unlisted` drop, so
//! no RST or ICMP error answers a scan or a flood; `UNLISTED_PASS` names
//! the agent's other listeners there (DNS server, API), which the kernel's
//! stack must still see. `ORIGIN_SOURCES` holds each family's NAT sources.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, lpm_trie::Key},
};
use proxy_common::{
    ListenerKey, MAX_POOL_PREFIXES, MAX_UNLISTED_PASS, PoolValue, SourceSet, source_index,
};

use crate::parse::Packet;

/// Empty when `edge.unlisted` is `pass`: nothing is ever dropped here.
#[map]
static POOLS: LpmTrie<[u8; 16], PoolValue> = LpmTrie::with_max_entries(MAX_POOL_PREFIXES, 0);

/// Exact (protocol, address, port), or the address all zeros for a
/// listener on the unspecified address of either family.
#[map]
static UNLISTED_PASS: HashMap<ListenerKey, PoolValue> =
    HashMap::with_max_entries(MAX_UNLISTED_PASS, 0);

#[map]
static ORIGIN_SOURCES: Array<SourceSet> = Array::with_max_entries(2, 0);

/// Whether a TCP or UDP packet that matched no listener goes to an edge
/// address no one serves there: drop it. Two hash lookups and one trie
/// walk (at most 128 bits), on the miss path only.
#[inline(never)]
pub fn unlisted(packet: &Packet) -> bool {
    if POOLS.get(Key::new(128, packet.dst)).is_none() {
        return false;
    }
    let mut key = ListenerKey::new(packet.proto, packet.dst, packet.dst_port);
    if unsafe { UNLISTED_PASS.get(key) }.is_some() {
        return false;
    }
    key.addr = [0; 16];
    unsafe { UNLISTED_PASS.get(key) }.is_none()
}

/// The origin-facing source of a new flow of this family, chosen by
/// `pick` (a hash of the client's tuple); `None` when the family has none.
/// Not inlined: `conntrack::open`'s frame is near the stack limit.
#[inline(never)]
pub fn origin_source(ipv6: bool, pick: u32) -> Option<&'static [u8; 16]> {
    ORIGIN_SOURCES.get(source_index(ipv6))?.pick(pick)
}
