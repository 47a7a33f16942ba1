//! Every BPF map key and value, defined once for the XDP program and the agent.
//!
//! Layouts are `#[repr(C)]` with explicit padding fields so that both sides
//! agree byte for byte and no uninitialised padding ever reaches a hash key.
//! Addresses are 16 bytes: IPv6 as is, IPv4 mapped into IPv6
//! (`::ffff:a.b.c.d`), always in network byte order. Ports are in host order.
#![no_std]

#[cfg(test)]
extern crate std;

/// Highest number of applications the maps can hold.
pub const MAX_APPS: u32 = 4096;
/// Origins of one address family one application can spread its flows over.
pub const MAX_ORIGINS_PER_FAMILY: u32 = 8;
/// Tracked flows; each flow takes two entries (one per direction).
pub const MAX_FLOW_ENTRIES: u32 = 262_144;
/// Interfaces the program can redirect to.
pub const MAX_INTERFACES: u32 = 64;
/// Listener entries: (protocol, edge address, port). Ranges are expanded per
/// port, so one `tcp/1-65535` app with an IPv4 and an IPv6 address takes 131,070.
pub const MAX_LISTENERS: u32 = 262_144;

/// Prefixes `RULES` can hold, over both generations (the one in force and
/// the one being loaded beside it).
pub const MAX_RULE_PREFIXES: u32 = 4 * 1024 * 1024;
/// Bytes of the ring buffer that carries sampled block events to the agent.
pub const BLOCK_EVENTS_BYTES: u32 = 256 * 1024;
/// Shortest gap between two block events from one CPU (at most 1,000 a
/// second per CPU reach the agent, however hard the edge is hit).
pub const BLOCK_EVENT_GAP_NS: u64 = 1_000_000;

/// Map names as the XDP program declares them.
pub mod map_names {
    pub const LISTENERS: &str = "LISTENERS";
    pub const APPS: &str = "APPS";
    pub const ORIGINS: &str = "ORIGINS";
    pub const STATS: &str = "STATS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const FLOWS: &str = "FLOWS";
    pub const TX_PORTS: &str = "TX_PORTS";
    pub const RULES: &str = "RULES";
    pub const RULE_STATE: &str = "RULE_STATE";
    pub const BLOCK_EVENTS: &str = "BLOCK_EVENTS";
    pub const SOCKETS: &str = "SOCKETS";
}

pub mod csum;

/// The sk_lookup program that steers agent-path apps to the agent's sockets,
/// and its socket map's slots.
pub const STEER_PROGRAM: &str = "steer";
pub const AGENT_TCP_SOCKET: u32 = 0;
pub const AGENT_UDP_SOCKET: u32 = 1;
pub const AGENT_SOCKETS: u32 = 2;

/// The name of the XDP program in the object file.
pub const XDP_PROGRAM: &str = "proxy";
/// The benchmark's minimal router (fib lookup + redirect, no NAT).
pub const ROUTER_PROGRAM: &str = "router";
/// Its TC-ingress counterpart (fib lookup + bpf_redirect_neigh, no NAT).
pub const TC_ROUTER_PROGRAM: &str = "tc_router";
/// An XDP program that passes everything (the benchmark's cost of having
/// XDP attached at all).
pub const PASS_PROGRAM: &str = "pass";
/// The same NAT as the XDP program, at TC ingress (apps whose `datapath`
/// is `tc`, or TCP apps under `auto`).
pub const TC_PROGRAM: &str = "proxy_tc";
/// The benchmark's sink (counts and drops IPv4 UDP) and its counter.
pub const SINK_PROGRAM: &str = "sink";
pub const SINK_COUNT_MAP: &str = "SINK_COUNT";

/// IP protocol numbers the data path knows.
pub mod ip_proto {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// The first 12 bytes of an IPv4-mapped IPv6 address.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Maps an IPv4 address (network order bytes) into the 16-byte form.
#[inline(always)]
pub const fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// Key of `LISTENERS`: which application answers on (protocol, edge address, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

impl ListenerKey {
    #[inline(always)]
    pub const fn new(proto: u8, addr: [u8; 16], port: u16) -> Self {
        Self {
            addr,
            port,
            proto,
            _pad: 0,
        }
    }
}

/// Value of `LISTENERS`: the index of the application in `APPS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerValue {
    pub app: u32,
}

/// `AppValue::flags`: the zone's IP access rules apply to this app.
pub const APP_FLAG_IP_FIREWALL: u32 = 1 << 0;
/// `AppValue::flags`: the kernel may proxy this app on its own (TLS off and
/// no PROXY header on TCP); otherwise packets go up to the agent.
pub const APP_FLAG_FAST_PATH: u32 = 1 << 1;
/// `AppValue::flags`: the fast path's NAT runs at TC ingress, not in XDP
/// (XDP still applies the access rules first, then passes the packet up).
pub const APP_FLAG_TC: u32 = 1 << 2;

/// Value of `APPS` (an array indexed by application index).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppValue {
    pub flags: u32,
    /// First port of the edge range; edge port `p` maps to origin port
    /// `origin.port_start + (p - edge_port_start)`.
    pub edge_port_start: u16,
    /// Usable entries in `ORIGINS` per family (0 while the origin's DNS
    /// name is unresolved). The fast path picks an origin of the client's
    /// family; IPv4 <-> IPv6 translation is left to the agent.
    pub origins_v4: u8,
    pub origins_v6: u8,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl AppValue {
    #[inline(always)]
    pub const fn origin_count(&self, ipv6: bool) -> u8 {
        if ipv6 {
            self.origins_v6
        } else {
            self.origins_v4
        }
    }
}

/// Value of `ORIGINS` (an array indexed by `origin_index(app, ipv6, slot)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OriginValue {
    pub addr: [u8; 16],
    pub port_start: u16,
    pub _pad: [u8; 2],
}

/// Index in `ORIGINS` of an application's origin slot of one family.
#[inline(always)]
pub const fn origin_index(app: u32, ipv6: bool, slot: u32) -> u32 {
    (app * 2 + ipv6 as u32) * MAX_ORIGINS_PER_FAMILY + slot
}

/// Entries of `ORIGINS`.
pub const ORIGIN_ENTRIES: u32 = MAX_APPS * 2 * MAX_ORIGINS_PER_FAMILY;

/// `Settings::flags`: `source_v4` is set (IPv4 origins can be NATed to).
pub const SETTINGS_HAS_SOURCE_V4: u32 = 1 << 0;
/// `Settings::flags`: `source_v6` is set.
pub const SETTINGS_HAS_SOURCE_V6: u32 = 1 << 1;

/// `Settings::flags`: XDP leaves TCP to TC. No TCP app's fast path runs
/// in XDP and no TCP app has `ip_firewall`, so XDP has nothing to do for
/// TCP: it passes TCP at once, without a lookup or a count, and the TC
/// program takes every TCP fast-path app and counts what it leaves alone.
pub const SETTINGS_TC_ONLY_TCP: u32 = 1 << 2;
/// `Settings::flags`: the same for UDP.
pub const SETTINGS_TC_ONLY_UDP: u32 = 1 << 3;

/// The `SETTINGS_TC_ONLY_*` flag of an IP protocol (0 for others).
#[inline(always)]
pub const fn tc_only_flag(proto: u8) -> u32 {
    match proto {
        ip_proto::TCP => SETTINGS_TC_ONLY_TCP,
        ip_proto::UDP => SETTINGS_TC_ONLY_UDP,
        _ => 0,
    }
}

/// Value of `SETTINGS` (an array of one): edge-wide NAT parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// The edge's origin-facing source addresses (16-byte form).
    pub source_v4: [u8; 16],
    pub source_v6: [u8; 16],
    /// Source ports the NAT may use toward origins (inclusive).
    pub nat_port_min: u16,
    pub nat_port_max: u16,
    pub flags: u32,
}

/// Key of `FLOWS`: a packet's 5-tuple as it arrives, in either direction.
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
/// client (set on the reply direction's entry: the origin answered).
pub const FLOW_REPLIED: u8 = 1 << 0;
/// `FlowValue::state` bit: a FIN went this direction.
pub const FLOW_FIN: u8 = 1 << 1;
/// `FlowValue::state` bit: a RST went this direction.
pub const FLOW_RST: u8 = 1 << 2;

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
    pub _pad: [u8; 5],
    /// Next hop of this direction from the last route lookup (0: look it
    /// up): the interface and the MACs to write. Cleared once a second, so
    /// route and neighbour changes apply within a second.
    pub hop_ifindex: u32,
    pub hop_dmac: [u8; 6],
    pub hop_smac: [u8; 6],
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

/// `RuleKey::action`.
pub const RULE_ALLOW: u8 = 1;
pub const RULE_BLOCK: u8 = 2;
/// `RuleKey::family`.
pub const RULE_FAMILY_V4: u8 = 4;
pub const RULE_FAMILY_V6: u8 = 6;
/// Bits of `RuleKey` before the address: generation, action, family, pad.
pub const RULE_KEY_TAG_BITS: u32 = 32;

/// Data of a `RULES` (LPM trie) key. One trie holds every access-rule prefix,
/// tagged: a lookup only matches prefixes of its own generation, action and
/// address family, because the tag is part of every stored prefix. The
/// address is in the 16-byte form (IPv4 mapped), so an IPv4 prefix /p is
/// stored with length `RULE_KEY_TAG_BITS + 96 + p`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RuleKey {
    pub generation: u8,
    pub action: u8,
    pub family: u8,
    pub _pad: u8,
    pub addr: [u8; 16],
}

impl RuleKey {
    #[inline(always)]
    pub const fn new(generation: u8, action: u8, ipv6: bool, addr: [u8; 16]) -> Self {
        Self {
            generation,
            action,
            family: if ipv6 { RULE_FAMILY_V6 } else { RULE_FAMILY_V4 },
            _pad: 0,
            addr,
        }
    }

    /// The LPM prefix length of an address prefix of `bits` (counted in its
    /// own family: 0-32 for IPv4, 0-128 for IPv6).
    #[inline(always)]
    pub const fn prefix_len(ipv6: bool, bits: u8) -> u32 {
        RULE_KEY_TAG_BITS + if ipv6 { 0 } else { 96 } + bits as u32
    }

    /// The prefix length that looks up one full address.
    pub const FULL_LEN: u32 = RULE_KEY_TAG_BITS + 128;
}

/// `RuleValue::kind`: what the matching rule targeted.
pub const RULE_KIND_IP: u8 = 0;
pub const RULE_KIND_RANGE: u8 = 1;
pub const RULE_KIND_ASN: u8 = 2;
pub const RULE_KIND_COUNTRY: u8 = 3;

/// Value of `RULES`: which rule a prefix came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleValue {
    /// Position of the rule in the config's `access_rules`.
    pub rule: u32,
    pub kind: u8,
    pub _pad: [u8; 3],
}

/// Value of `RULE_STATE` (an array of one): the rule generation in force.
/// Switching generations is one update of this entry, so a half-loaded rule
/// set is never in force.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleState {
    pub generation: u8,
    /// Whether the generation has allow / block prefixes at all (a packet
    /// skips the lookups it cannot match).
    pub has_allow: u8,
    pub has_block: u8,
    pub _pad: u8,
}

/// One record of `BLOCK_EVENTS`: a packet dropped by an access rule
/// (sampled: see `BLOCK_EVENT_GAP_NS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockEvent {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub app: u32,
    pub rule: u32,
    /// The `Verdict` (one of the `Blocked*`).
    pub verdict: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
}

/// Why the XDP program did what it did with a packet. Kernel and agent share
/// these codes, so counters and logs name the reason.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// TCP/UDP packet to no configured (protocol, address, port): passed.
    NoListener = 0,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): passed.
    NotIp = 1,
    /// A header was cut short or invalid: passed to the stack, which drops it.
    Malformed = 2,
    /// An IPv4 fragment: passed (fragments carry no complete L4 header).
    Fragment = 3,
    /// IP, but neither TCP nor UDP (or an IPv6 extension header): passed.
    OtherProtocol = 4,
    /// Matched an application and handed to the edge's stack (agent).
    ToAgent = 5,
    /// Fast path: rewritten toward the origin and redirected.
    ToOrigin = 6,
    /// Fast path: an origin's reply rewritten toward the client and redirected.
    ToClient = 7,
    /// Fast path rewrite done, but the next hop's MAC is not known yet: the
    /// packet goes through the kernel's forwarding path, which resolves it.
    NeighborPending = 8,
    /// Counted once per new flow (not per packet) opened in XDP.
    FlowOpened = 9,
    /// Counted by the agent when it removes an idle or closed flow that
    /// XDP opened.
    FlowExpired = 10,
    /// No free NAT source port or flow entry: dropped.
    NatFailed = 11,
    /// Fast-path app, but no origin of the client's address family (or not
    /// resolved yet): handed to the agent.
    NoOrigin = 12,
    /// Fast-path TCP app, not a SYN and no flow: handed to the stack (which
    /// answers with a reset).
    NoFlow = 13,
    /// The route lookup failed (no route, blackhole, forwarding off): dropped.
    NoRoute = 14,
    /// An ICMP or ICMPv6 error: passed to the stack, not translated back to
    /// the client.
    IcmpError = 15,
    /// Rewritten, but larger than the egress MTU: passed to the kernel,
    /// which fragments what it may; a DF packet is lost (the kernel cannot
    /// tell the client, whose address is gone).
    TooBig = 16,
    /// Dropped: the source matched a block rule on a single IP, and no
    /// allow rule.
    BlockedIp = 17,
    /// Dropped: the source matched a block rule on an IP range.
    BlockedRange = 18,
    /// Dropped: the source is in an ASN a block rule names.
    BlockedAsn = 19,
    /// Dropped: the source is in a country a block rule names.
    BlockedCountry = 20,
    /// Agent: a connection accepted for the app (bytes: what the client sent
    /// through to the origin, counted when it ends).
    ConnAccepted = 21,
    /// Agent: a connection that ended (bytes: what the origin sent to the
    /// client).
    ConnClosed = 22,
    /// Agent: the client's TLS handshake failed or timed out.
    TlsFailed = 23,
    /// Agent: the origin could not be reached, refused, timed out, or its
    /// TLS handshake or certificate failed.
    OriginFailed = 24,
    /// Agent: closed for idleness (including a client that never spoke).
    ConnTimeout = 25,
    /// Agent: refused at once, over the concurrent connection limit.
    ConnLimited = 26,
    /// Agent, UDP: an origin datagram dropped (an SPP reply without a
    /// valid header, or naming another client than its flow's).
    BadReply = 27,
    /// XDP passed a packet of a TC-hook app or flow up to TC ingress (after
    /// the access rules), whose NAT counts it again as it sends it on.
    ToTc = 28,
    /// `FlowOpened` for a flow opened at TC ingress.
    FlowOpenedTc = 29,
    /// `FlowExpired` for a flow opened at TC ingress.
    FlowExpiredTc = 30,
}

impl Verdict {
    pub const COUNT: u32 = 31;
    pub const ALL: [Verdict; Self::COUNT as usize] = [
        Verdict::NoListener,
        Verdict::NotIp,
        Verdict::Malformed,
        Verdict::Fragment,
        Verdict::OtherProtocol,
        Verdict::ToAgent,
        Verdict::ToOrigin,
        Verdict::ToClient,
        Verdict::NeighborPending,
        Verdict::FlowOpened,
        Verdict::FlowExpired,
        Verdict::NatFailed,
        Verdict::NoOrigin,
        Verdict::NoFlow,
        Verdict::NoRoute,
        Verdict::IcmpError,
        Verdict::TooBig,
        Verdict::BlockedIp,
        Verdict::BlockedRange,
        Verdict::BlockedAsn,
        Verdict::BlockedCountry,
        Verdict::ConnAccepted,
        Verdict::ConnClosed,
        Verdict::TlsFailed,
        Verdict::OriginFailed,
        Verdict::ConnTimeout,
        Verdict::ConnLimited,
        Verdict::BadReply,
        Verdict::ToTc,
        Verdict::FlowOpenedTc,
        Verdict::FlowExpiredTc,
    ];

    /// The verdict counting a flow opened at `hook` that the agent removed.
    #[inline(always)]
    pub const fn flow_expired(hook: u8) -> Verdict {
        if hook == HOOK_TC {
            Verdict::FlowExpiredTc
        } else {
            Verdict::FlowExpired
        }
    }

    /// The verdict of a packet dropped by a block rule of `kind`.
    #[inline(always)]
    pub const fn blocked(kind: u8) -> Verdict {
        match kind {
            RULE_KIND_IP => Verdict::BlockedIp,
            RULE_KIND_RANGE => Verdict::BlockedRange,
            RULE_KIND_ASN => Verdict::BlockedAsn,
            _ => Verdict::BlockedCountry,
        }
    }

    /// Stable name for logs, metrics and the `stats` command.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::NoListener => "no_listener",
            Verdict::NotIp => "not_ip",
            Verdict::Malformed => "malformed",
            Verdict::Fragment => "fragment",
            Verdict::OtherProtocol => "other_protocol",
            Verdict::ToAgent => "to_agent",
            Verdict::ToOrigin => "to_origin",
            Verdict::ToClient => "to_client",
            Verdict::NeighborPending => "neighbor_pending",
            Verdict::FlowOpened => "flow_opened",
            Verdict::FlowExpired => "flow_expired",
            Verdict::NatFailed => "nat_failed",
            Verdict::NoOrigin => "no_origin",
            Verdict::NoFlow => "no_flow",
            Verdict::NoRoute => "no_route",
            Verdict::IcmpError => "icmp_error",
            Verdict::TooBig => "too_big",
            Verdict::BlockedIp => "blocked_ip",
            Verdict::BlockedRange => "blocked_range",
            Verdict::BlockedAsn => "blocked_asn",
            Verdict::BlockedCountry => "blocked_country",
            Verdict::ConnAccepted => "conn_accepted",
            Verdict::ConnClosed => "conn_closed",
            Verdict::TlsFailed => "tls_failed",
            Verdict::OriginFailed => "origin_failed",
            Verdict::ConnTimeout => "conn_timeout",
            Verdict::ConnLimited => "conn_limited",
            Verdict::BadReply => "bad_reply",
            Verdict::ToTc => "to_tc",
            Verdict::FlowOpenedTc => "flow_opened_tc",
            Verdict::FlowExpiredTc => "flow_expired_tc",
        }
    }
}

/// Counter slot for packets that belong to no application.
pub const GLOBAL_SLOT: u32 = MAX_APPS;
/// Entries of `STATS`: one row of verdicts per app, plus the global row.
pub const STATS_ENTRIES: u32 = (MAX_APPS + 1) * Verdict::COUNT;

/// Index in `STATS` of (app slot or `GLOBAL_SLOT`, verdict).
#[inline(always)]
pub const fn stats_index(slot: u32, verdict: Verdict) -> u32 {
    slot * Verdict::COUNT + verdict as u32
}

/// Value of `STATS` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain #[repr(C)] data without implicit padding; every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for ListenerKey {}
    unsafe impl aya::Pod for ListenerValue {}
    unsafe impl aya::Pod for AppValue {}
    unsafe impl aya::Pod for OriginValue {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for RuleKey {}
    unsafe impl aya::Pod for RuleValue {}
    unsafe impl aya::Pod for RuleState {}
    unsafe impl aya::Pod for BlockEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(size_of::<ListenerKey>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<ListenerValue>(), 4);
        assert_eq!(size_of::<AppValue>(), 4 + 2 + 1 + 1 + 1 + 3);
        assert_eq!(size_of::<OriginValue>(), 16 + 2 + 2);
        assert_eq!(size_of::<Settings>(), 16 + 16 + 2 + 2 + 4);
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 1 + 3);
        assert_eq!(
            size_of::<FlowValue>(),
            16 + 16 + 2 + 2 + 4 + 8 + 1 + 1 + 6 + 4 + 6 + 6
        );
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<RuleKey>(), 4 + 16);
        assert_eq!(size_of::<RuleValue>(), 4 + 1 + 3);
        assert_eq!(size_of::<RuleState>(), 4);
        assert_eq!(size_of::<BlockEvent>(), 16 + 16 + 2 + 2 + 4 + 4 + 1 + 1 + 2);
    }

    #[test]
    fn stats_rows_do_not_overlap() {
        let last = Verdict::ALL[Verdict::COUNT as usize - 1];
        let last_app = stats_index(MAX_APPS - 1, last);
        let first_global = stats_index(GLOBAL_SLOT, Verdict::NoListener);
        assert_eq!(last_app + 1, first_global);
        assert_eq!(stats_index(GLOBAL_SLOT, last) + 1, STATS_ENTRIES);
        // ALL lists each verdict once, in code order.
        for (i, verdict) in Verdict::ALL.iter().enumerate() {
            assert_eq!(*verdict as usize, i, "{}", verdict.name());
        }
    }

    #[test]
    fn origin_slots_do_not_overlap() {
        assert_eq!(origin_index(0, true, 0), MAX_ORIGINS_PER_FAMILY);
        assert_eq!(
            origin_index(0, true, MAX_ORIGINS_PER_FAMILY - 1) + 1,
            origin_index(1, false, 0)
        );
        assert_eq!(
            origin_index(MAX_APPS - 1, true, MAX_ORIGINS_PER_FAMILY - 1) + 1,
            ORIGIN_ENTRIES
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

    #[test]
    fn verdict_table_is_complete_and_ordered() {
        for (i, v) in Verdict::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i, "{}", v.name());
        }
    }

    #[test]
    fn rule_prefixes_cover_the_tag_and_the_family_bits() {
        // An IPv4 /0 rule still pins the tag and the mapped prefix.
        assert_eq!(RuleKey::prefix_len(false, 0), 32 + 96);
        assert_eq!(RuleKey::prefix_len(false, 32), RuleKey::FULL_LEN);
        assert_eq!(RuleKey::prefix_len(true, 128), RuleKey::FULL_LEN);
        for kind in [
            RULE_KIND_IP,
            RULE_KIND_RANGE,
            RULE_KIND_ASN,
            RULE_KIND_COUNTRY,
        ] {
            assert!(Verdict::blocked(kind).name().starts_with("blocked_"));
        }
    }

    #[test]
    fn v4_mapped_matches_std() {
        assert_eq!(
            v4_mapped([192, 0, 2, 1])[..12],
            V4_MAPPED_PREFIX[..],
            "prefix"
        );
        assert_eq!(v4_mapped([192, 0, 2, 1])[12..], [192, 0, 2, 1]);
    }
}
