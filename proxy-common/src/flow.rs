//! `FLOWS` and `NEW_FLOWS`: the NAT's connection tables, two entries per
//! flow (one per direction), and the hash that picks a flow's origin and
//! NAT port. A flow is embryonic (in `NEW_FLOWS`, an LRU with its own
//! budget) until its handshake completes (TCP: the client's ACK after the
//! origin's SYN-ACK) or the origin replies (UDP); then both halves move to
//! `FLOWS`, which never evicts, so a flood of new flows cannot push out
//! established ones.

/// Key of `FLOWS` and `NEW_FLOWS`: a packet's 5-tuple as it arrives, in either direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// A hash of a client's tuple (addresses in the 16-byte form, ports in
/// host order) with well-mixed high bits: the fast path picks a flow's
/// origin from it, and the NAT ports it tries after the client's own
/// (folded into the range), so the same client tuple gets the same
/// origin-side tuple from any run of the agent. After a restart (an empty
/// flow table), an origin then sees a client's reused tuple arrive on the
/// NAT tuple it had before, as with plain routing, not on a random NAT
/// port whose TIME_WAIT entry belongs to another client connection (which
/// the origin refuses for a minute: PAWS). Not keyed: NAT ports are as
/// predictable as the client's own.
#[inline(always)]
pub fn tuple_hash(src: &[u8; 16], dst: &[u8; 16], src_port: u16, dst_port: u16) -> u32 {
    let mut hash = ((src_port as u32) << 16 | dst_port as u32) ^ 0x9E37_79B9;
    let mut mix = |bytes: &[u8; 16]| {
        let mut i = 0;
        while i < 16 {
            let word = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
            hash = (hash ^ word).wrapping_mul(0xCC9E_2D51).rotate_left(15);
            i += 4;
        }
    };
    mix(src);
    mix(dst);
    // murmur3's finalizer: every input bit reaches the high bits.
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85EB_CA6B);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xC2B2_AE35);
    hash ^ (hash >> 16)
}

/// `FlowValue::hook`: the XDP program opened the flow.
pub const HOOK_XDP: u8 = 0;
/// `FlowValue::hook`: the TC-ingress program opened the flow.
pub const HOOK_TC: u8 = 1;

/// `FlowValue::direction`: client -> origin.
pub const DIR_TO_ORIGIN: u8 = 0;
/// `FlowValue::direction`: origin -> client.
pub const DIR_TO_CLIENT: u8 = 1;

/// `FlowValue::state` bit: a packet of this direction went from origin to
/// client (set on the reply direction's entry: the origin answered; for
/// TCP, the SYN-ACK).
pub const FLOW_REPLIED: u8 = 1 << 0;
/// `FlowValue::state` bit: a FIN went this direction.
pub const FLOW_FIN: u8 = 1 << 1;
/// `FlowValue::state` bit: a RST went this direction (one in window).
pub const FLOW_RST: u8 = 1 << 2;
/// `FlowValue::state` bit, in `FLOWS`: the client opened a new connection
/// on this closing flow's tuple (a SYN) and its handshake is not complete:
/// the origin's SYN-ACK is let through, and the flow has `tcp_new`'s
/// timeout until the client's ACK.
pub const FLOW_HANDSHAKE: u8 = 1 << 3;
/// `FlowValue::state` bit, on both halves: the flow was opened by the SYN
/// proxy. Its origin-side sequence numbers differ from those the client
/// knows (`seq_adj`), and so may its timestamps (`ts_adj`) and window
/// scale (`origin_ws`, `edge_ws`): the fast path translates every packet.
pub const FLOW_SYN_PROXY: u8 = 1 << 4;
/// `FlowValue::state` bit, on both halves, with `FLOW_SYN_PROXY`: the
/// client's cookie was good and the edge's SYN went to the origin; its
/// SYN-ACK has not come yet (the flow is embryonic).
pub const FLOW_ORIGIN_PENDING: u8 = 1 << 5;

/// `FlowValue::syn_opts` bits: what the client offered in its SYN (the SYN
/// proxy keeps it, from the cookie's timestamp, for the origin's SYN).
pub const SYN_OPT_SACK: u8 = 1 << 0;
pub const SYN_OPT_TIMESTAMPS: u8 = 1 << 1;
pub const SYN_OPT_WSCALE: u8 = 1 << 2;
/// The client offered a window scale, the origin declined it: neither
/// side scales, but the client was told the edge does, so the client's
/// windows are scaled up for the origin (and the origin's down for the
/// client, `origin_ws` 0).
pub const SYN_OPT_ORIGIN_NO_WS: u8 = 1 << 3;

/// Value of `FLOWS`: how to rewrite a packet of this direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    /// The packet's new source and destination.
    pub new_src: [u8; 16],
    pub new_dst: [u8; 16],
    pub new_src_port: u16,
    pub new_dst_port: u16,
    /// App index (counter row).
    pub app: u32,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last packet, updated at
    /// most once a second.
    pub last_seen_ns: u64,
    /// `FLOW_*` bits of this direction (0 for UDP and for a TCP flow that
    /// only saw its SYN).
    pub state: u8,
    pub direction: u8,
    /// `HOOK_XDP` or `HOOK_TC`: the hook that opened the flow. XDP
    /// rewrites only its own flows and passes a TC flow's packets up
    /// (`to_tc`); TC rewrites any flow whose packets reach it (XDP's, once
    /// XDP leaves their protocol to TC after a live change).
    pub hook: u8,
    pub _pad: u8,
    /// TCP: the highest sequence number this direction's sender was seen
    /// to use, moved on in steps (`SEQ_STEP` in the kernel, so a busy flow
    /// is not written on every packet); a RST is judged against it.
    pub seq: u32,
    /// Next hop of this direction from the last route lookup (0: look it
    /// up): the interface and the MACs to write. Cleared once a second, so
    /// route and neighbour changes apply within a second.
    pub hop_ifindex: u32,
    pub hop_dmac: [u8; 6],
    pub hop_smac: [u8; 6],
    /// SYN proxy (`FLOW_SYN_PROXY`): the edge's initial sequence number
    /// (the cookie) minus the origin's. Added to the sequence number of
    /// origin -> client packets, taken from the acknowledgement number and
    /// SACK blocks of client -> origin ones. While `FLOW_ORIGIN_PENDING`:
    /// the cookie itself (to-client half) and the client's initial
    /// sequence number (to-origin half).
    pub seq_adj: u32,
    /// SYN proxy: the edge's timestamp clock minus the origin's, added to
    /// TSval origin -> client, taken from TSecr client -> origin. While
    /// `FLOW_ORIGIN_PENDING`: the edge's TSval in its SYN-ACK (to-client
    /// half) and the client's latest TSval (to-origin half).
    pub ts_adj: u32,
    /// SYN proxy: the MSS the client announced (as the cookie kept it).
    pub syn_mss: u16,
    /// SYN proxy: window scale of the origin (from its SYN-ACK) and the
    /// one the edge announced to the client; the origin's windows are
    /// rescaled when they differ.
    pub origin_ws: u8,
    pub edge_ws: u8,
    /// SYN proxy: `SYN_OPT_*` the client offered (window scale in
    /// `client_ws`).
    pub syn_opts: u8,
    pub client_ws: u8,
    /// SYN proxy, to-origin half while `FLOW_ORIGIN_PENDING`: the raw window
    /// of the client's ACK (scaled by `client_ws`), for the edge's ACK to
    /// the origin.
    pub client_win: u16,
}

impl FlowValue {
    /// The key of the other direction's entry: its packets come from where
    /// this direction's go, to where they come from.
    #[inline(always)]
    pub const fn peer_key(&self, proto: u8) -> FlowKey {
        FlowKey {
            src: self.new_dst,
            dst: self.new_src,
            src_port: self.new_dst_port,
            dst_port: self.new_src_port,
            proto,
            _pad: [0; 3],
        }
    }
}

user_pod!(FlowKey, FlowValue);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ip_proto, v4_mapped};
    use core::mem::size_of;

    #[test]
    fn tuple_hash_is_stable_and_spreads_ports() {
        let client = v4_mapped([10, 0, 1, 2]);
        let edge = v4_mapped([10, 0, 100, 1]);
        assert_eq!(
            tuple_hash(&client, &edge, 40000, 80),
            tuple_hash(&client, &edge, 40000, 80)
        );
        // 28,232 client ports (Linux's ephemeral range) onto a 10,000-port
        // NAT range by the high bits, as the fast path scales them: spread
        // as a uniform hash would (Poisson, mean 2.8: about 6% of the NAT
        // ports unused, none used more than a dozen times).
        let mut hits = [0u32; 10_000];
        for port in 32768..61000u16 {
            let hash = tuple_hash(&client, &edge, port, 80);
            hits[((hash as u64 * 10_000) >> 32) as usize] += 1;
        }
        let unused = hits.iter().filter(|&&h| h == 0).count();
        let most = hits.iter().copied().max().unwrap_or(0);
        assert!((400..=850).contains(&unused), "{unused} NAT ports unused");
        assert!(most <= 12, "a NAT port used {most} times");
        // Each part of the tuple changes the hash.
        let base = tuple_hash(&client, &edge, 40000, 80);
        assert_ne!(
            tuple_hash(&v4_mapped([10, 0, 1, 3]), &edge, 40000, 80),
            base
        );
        assert_ne!(
            tuple_hash(&client, &v4_mapped([10, 0, 100, 2]), 40000, 80),
            base
        );
        assert_ne!(tuple_hash(&client, &edge, 40001, 80), base);
        assert_ne!(tuple_hash(&client, &edge, 40000, 81), base);
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 1 + 3);
        assert_eq!(
            size_of::<FlowValue>(),
            16 + 16 + 2 + 2 + 4 + 8 + 1 + 1 + 1 + 1 + 4 + 4 + 6 + 6 + 4 + 4 + 2 + 1 + 1 + 1 + 1 + 2
        );
    }

    #[test]
    fn peer_key_is_the_reverse_direction() {
        let value = FlowValue {
            new_src: [1; 16],
            new_dst: [2; 16],
            new_src_port: 1000,
            new_dst_port: 2000,
            ..FlowValue::default()
        };
        let peer = value.peer_key(ip_proto::UDP);
        assert_eq!((peer.src, peer.dst), ([2; 16], [1; 16]));
        assert_eq!(
            (peer.src_port, peer.dst_port, peer.proto),
            (2000, 1000, ip_proto::UDP)
        );
    }
}
