//! Names of the programs and maps in the object file: the agent finds them
//! by these strings, so both sides spell them from here.

/// Map names as the XDP program declares them.
pub mod map_names {
    pub const LISTENERS: &str = "LISTENERS";
    pub const APPS: &str = "APPS";
    pub const ORIGINS: &str = "ORIGINS";
    pub const STATS: &str = "STATS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const FLOWS: &str = "FLOWS";
    pub const NEW_FLOWS: &str = "NEW_FLOWS";
    pub const TX_PORTS: &str = "TX_PORTS";
    pub const RULES: &str = "RULES";
    pub const RULE_STATE: &str = "RULE_STATE";
    pub const BLOCK_EVENTS: &str = "BLOCK_EVENTS";
    pub const SOCKETS: &str = "SOCKETS";
    pub const POOLS: &str = "POOLS";
    pub const UNLISTED_PASS: &str = "UNLISTED_PASS";
    pub const ORIGIN_SOURCES: &str = "ORIGIN_SOURCES";
    pub const CLIENTS: &str = "CLIENTS";
    pub const CLIENT_LIMITS: &str = "CLIENT_LIMITS";
    /// The SYN proxy's program arrays (slot 0: `SYN_PROXY_PROGRAM`,
    /// `SYN_PROXY_TC_PROGRAM`), which the packet path tail-calls.
    pub const SYN_PROXY_XDP: &str = "SYN_PROXY_XDP";
    pub const SYN_PROXY_TC: &str = "SYN_PROXY_TC";
}

/// The sk_lookup program that steers agent-path apps to the agent's sockets
/// (its socket map's slots: `AGENT_*_SOCKET`).
pub const STEER_PROGRAM: &str = "steer";
/// The name of the XDP program in the object file.
pub const XDP_PROGRAM: &str = "proxy";
/// The SYN proxy's handshakes at XDP and at TC ingress, tail-called from
/// `XDP_PROGRAM` and `TC_PROGRAM` (a stack of their own: the packet path's
/// is full).
pub const SYN_PROXY_PROGRAM: &str = "syn_proxy";
pub const SYN_PROXY_TC_PROGRAM: &str = "syn_proxy_tc";
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
