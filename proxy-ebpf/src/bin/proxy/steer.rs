//! sk_lookup: packets the XDP program handed to the stack for an agent-path
//! app (TLS, PROXY headers) go to the agent's one socket per protocol,
//! whatever the app's edge address and port. No `bind` per port: a range
//! of 65,535 ports costs one listener entry per port and one socket in all.
//!
//! It also checks the access rules of `ip_firewall` apps on the client's
//! address: XDP passes fragments and IPv6 extension headers up unparsed,
//! and what the kernel reassembles from them reaches this program with
//! the real client, whatever the packet's shape. A blocked client's
//! connection or datagram is dropped here (`SK_DROP`: the lookup fails, as
//! with no socket) and counted in the app's row under the rule's verdict.
use aya_ebpf::{
    bindings::sk_action,
    macros::{map, sk_lookup},
    maps::SockMap,
    programs::SkLookupContext,
};
use proxy_common::{
    AF_INET6, AGENT_SOCKETS, AGENT_TCP_SOCKET, AGENT_UDP_SOCKET, AppFlags, BlockEvent, ListenerKey,
    ip_proto, v4_mapped,
};

use proxy_ebpf::{apps, forward, listener, rules, stats};

/// The agent's sockets: `AGENT_TCP_SOCKET` (listening) and `AGENT_UDP_SOCKET`.
#[map]
static SOCKETS: SockMap = SockMap::with_max_entries(AGENT_SOCKETS, 0);

/// `lo` is the first interface of every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

#[sk_lookup]
pub fn steer(ctx: SkLookupContext) -> u32 {
    let lookup = ctx.lookup;
    // Every field is read up front, each at its constant offset: loads
    // chosen by a branch get merged into one load through a computed
    // pointer, which the verifier refuses for a context.
    // SAFETY: the kernel hands a valid bpf_sk_lookup for this call.
    let field = |f: *const u32| unsafe { core::ptr::read_volatile(f) };
    let (ingress, proto, family, port, ip4, ip6) = unsafe {
        (
            field(&raw const (*lookup).ingress_ifindex),
            field(&raw const (*lookup).protocol) as u8,
            field(&raw const (*lookup).family),
            field(&raw const (*lookup).local_port),
            field(&raw const (*lookup).local_ip4),
            [
                field(&raw const (*lookup).local_ip6[0]),
                field(&raw const (*lookup).local_ip6[1]),
                field(&raw const (*lookup).local_ip6[2]),
                field(&raw const (*lookup).local_ip6[3]),
            ],
        )
    };
    // The client's side, for the access rules (the port is big-endian).
    let (remote4, remote6, remote_port) = unsafe {
        (
            field(&raw const (*lookup).remote_ip4),
            [
                field(&raw const (*lookup).remote_ip6[0]),
                field(&raw const (*lookup).remote_ip6[1]),
                field(&raw const (*lookup).remote_ip6[2]),
                field(&raw const (*lookup).remote_ip6[3]),
            ],
            u16::from_be(core::ptr::read_volatile(&raw const (*lookup).remote_port)),
        )
    };
    // Only what came in through an edge interface (XDP checked the access
    // rules of what it parsed; they are checked again below) or from this
    // host itself (loopback) is the agent's;
    // another interface's traffic takes the normal lookup (a reset).
    if ingress != LOOPBACK_IFINDEX && !forward::is_edge_interface(ingress) {
        return sk_action::SK_PASS;
    }
    let socket = match proto {
        ip_proto::TCP => AGENT_TCP_SOCKET,
        ip_proto::UDP => AGENT_UDP_SOCKET,
        _ => return sk_action::SK_PASS,
    };
    let ipv6 = family == u32::from(AF_INET6);
    let addr = if ipv6 {
        words_to_addr(ip6)
    } else {
        v4_mapped(ip4.to_ne_bytes())
    };
    let key = ListenerKey::new(proto, addr, port as u16);
    let Some(index) = listener::lookup_key(&key) else {
        return sk_action::SK_PASS;
    };
    // Fast-path apps are the kernel's; what of them reaches the stack
    // (no origin of the client's family yet) takes the normal lookup.
    match apps::app_for(index, proto) {
        Some(app) if !app.flags.contains(AppFlags::FAST_PATH) => {
            if app.flags.contains(AppFlags::IP_FIREWALL) {
                let seen = BlockEvent {
                    src: if ipv6 {
                        words_to_addr(remote6)
                    } else {
                        v4_mapped(remote4.to_ne_bytes())
                    },
                    dst: addr,
                    src_port: remote_port,
                    dst_port: port as u16,
                    app: index,
                    proto,
                    ..BlockEvent::default()
                };
                if let Some(verdict) = rules::check_addr(ipv6, &seen) {
                    // No length here: the packet count is what matters.
                    stats::count(index, verdict, 0);
                    return sk_action::SK_DROP;
                }
            }
            // No agent socket (yet): the normal lookup answers (a reset).
            let _ = SOCKETS.redirect_sk_lookup(&ctx, socket, 0);
            sk_action::SK_PASS
        }
        _ => sk_action::SK_PASS,
    }
}

/// An IPv6 address from the context's four words (each in network order).
#[inline(always)]
fn words_to_addr(words: [u32; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0..4].copy_from_slice(&words[0].to_ne_bytes());
    a[4..8].copy_from_slice(&words[1].to_ne_bytes());
    a[8..12].copy_from_slice(&words[2].to_ne_bytes());
    a[12..16].copy_from_slice(&words[3].to_ne_bytes());
    a
}
