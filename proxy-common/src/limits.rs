//! Sizes of the maps, fixed at load time: the kernel allocates them up front.

/// Highest number of applications the maps can hold.
pub const MAX_APPS: u32 = 4096;
/// Origins of one address family one application can spread its flows over.
pub const MAX_ORIGINS_PER_FAMILY: u32 = 8;
/// Origin-facing source addresses per family (`edge.origin_source`): each
/// one multiplies the NAT's port space toward every origin.
pub const MAX_ORIGIN_SOURCES: u32 = 8;
/// Prefixes in `POOLS` (`edge.address_pool`: one per family today).
pub const MAX_POOL_PREFIXES: u32 = 16;
/// (protocol, address, port) the agent's own listeners (DNS server, API)
/// hold on pool addresses: exempt from the unlisted drop.
pub const MAX_UNLISTED_PASS: u32 = 256;
/// Established flows (`FLOWS`, a plain hash map: nothing evicts them);
/// each flow takes two entries (one per direction).
pub const MAX_FLOW_ENTRIES: u32 = 262_144;
/// Embryonic flows (`NEW_FLOWS`, an LRU): a TCP handshake not complete, a
/// UDP flow not answered. Their own budget, so no number of them can take
/// an established flow's place; two entries per flow.
pub const MAX_NEW_FLOW_ENTRIES: u32 = 65_536;
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
