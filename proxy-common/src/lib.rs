//! Every BPF map key and value, defined once for the XDP program and the agent.
//!
//! Layouts are `#[repr(C)]` with explicit padding fields so that both sides
//! agree byte for byte and no uninitialised padding ever reaches a hash key.
//! Addresses are 16 bytes: IPv6 as is, IPv4 mapped into IPv6
//! (`::ffff:a.b.c.d`), always in network byte order. Ports are in host order.
#![no_std]

/// Highest number of applications the maps can hold.
pub const MAX_APPS: u32 = 4096;
/// Origins one application can spread its flows over.
pub const MAX_ORIGINS_PER_APP: u32 = 16;
/// Listener entries: (protocol, edge address, port). Ranges are expanded per
/// port, so one `tcp/1-65535` app with an IPv4 and an IPv6 address takes 131,070.
pub const MAX_LISTENERS: u32 = 262_144;

/// Map names as the XDP program declares them.
pub mod map_names {
    pub const LISTENERS: &str = "LISTENERS";
    pub const APPS: &str = "APPS";
    pub const ORIGINS: &str = "ORIGINS";
    pub const STATS: &str = "STATS";
}

/// The name of the XDP program in the object file.
pub const XDP_PROGRAM: &str = "proxy";

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

/// Value of `APPS` (an array indexed by application index).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppValue {
    pub flags: u32,
    /// First port of the edge range; edge port `p` maps to origin port
    /// `origin.port_start + (p - edge_port_start)`.
    pub edge_port_start: u16,
    /// Number of usable entries in `ORIGINS` for this app (0 while the
    /// origin's DNS name is unresolved).
    pub origin_count: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Value of `ORIGINS` (an array indexed by `origin_index(app, slot)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OriginValue {
    pub addr: [u8; 16],
    pub port_start: u16,
    pub _pad: [u8; 2],
}

/// Index in `ORIGINS` of an application's origin slot.
#[inline(always)]
pub const fn origin_index(app: u32, slot: u32) -> u32 {
    app * MAX_ORIGINS_PER_APP + slot
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
}

impl Verdict {
    pub const COUNT: u32 = 6;
    pub const ALL: [Verdict; Self::COUNT as usize] = [
        Verdict::NoListener,
        Verdict::NotIp,
        Verdict::Malformed,
        Verdict::Fragment,
        Verdict::OtherProtocol,
        Verdict::ToAgent,
    ];

    /// Stable name for logs, metrics and the `stats` command.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::NoListener => "no_listener",
            Verdict::NotIp => "not_ip",
            Verdict::Malformed => "malformed",
            Verdict::Fragment => "fragment",
            Verdict::OtherProtocol => "other_protocol",
            Verdict::ToAgent => "to_agent",
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ListenerKey>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<ListenerValue>(), 4);
        assert_eq!(size_of::<AppValue>(), 4 + 2 + 2 + 1 + 3);
        assert_eq!(size_of::<OriginValue>(), 16 + 2 + 2);
        assert_eq!(size_of::<Counter>(), 16);
    }

    #[test]
    fn stats_rows_do_not_overlap() {
        let last_app = stats_index(MAX_APPS - 1, Verdict::ToAgent);
        let first_global = stats_index(GLOBAL_SLOT, Verdict::NoListener);
        assert_eq!(last_app + 1, first_global);
        assert_eq!(
            stats_index(GLOBAL_SLOT, Verdict::ToAgent) + 1,
            STATS_ENTRIES
        );
    }

    #[test]
    fn verdict_table_is_complete_and_ordered() {
        for (i, v) in Verdict::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i, "{}", v.name());
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
