//! Where a packet's application is found (`LISTENERS`), what the app is
//! (`APPS`), where its origins are (`ORIGINS`), and the agent's sockets
//! that agent-path apps are steered to (`SOCKETS`).

use crate::limits::{MAX_APPS, MAX_ORIGINS_PER_FAMILY};

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

flags! {
    /// `AppValue::flags`.
    pub struct AppFlags {
        /// The zone's IP access rules apply to this app.
        const IP_FIREWALL = 1 << 0;
        /// The kernel may proxy this app on its own (TLS off and no PROXY
        /// header on TCP); otherwise packets go up to the agent.
        const FAST_PATH = 1 << 1;
        /// The fast path's NAT runs at TC ingress, not in XDP (XDP still
        /// applies the access rules first, then passes the packet up).
        const TC = 1 << 2;
        /// Fast-path TCP: the edge answers SYNs itself with SYN cookies and
        /// opens the origin's side only for a client whose ACK carries a
        /// valid one (`syn_proxy`, on by default).
        const SYN_PROXY = 1 << 3;
    }
}

/// Value of `APPS` (an array indexed by application index).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppValue {
    pub flags: AppFlags,
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

/// Slots of `SOCKETS`, the steer program's socket map: the agent's
/// listening TCP socket and its UDP socket.
pub const AGENT_TCP_SOCKET: u32 = 0;
pub const AGENT_UDP_SOCKET: u32 = 1;
/// Entries of `SOCKETS`.
pub const AGENT_SOCKETS: u32 = 2;

user_pod!(ListenerKey, ListenerValue, AppValue, OriginValue);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ListenerKey>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<ListenerValue>(), 4);
        assert_eq!(size_of::<AppValue>(), 4 + 2 + 1 + 1 + 1 + 3);
        assert_eq!(size_of::<OriginValue>(), 16 + 2 + 2);
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
}
