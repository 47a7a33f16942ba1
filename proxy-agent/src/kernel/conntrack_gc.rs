//! Removes idle and closed flows from the kernel's flow table, and the
//! flows of clients new access rules block, and counts them per app
//! (`flow_expired`, or `flow_expired_tc` for flows opened at TC ingress).
//! The kernel's LRU also evicts under pressure; this keeps NAT ports free
//! and the counters honest.
use proxy_common::{
    Counter, DIR_TO_ORIGIN, FLOW_FIN, FLOW_REPLIED, FLOW_RST, FlowKey, FlowValue, Verdict, ip_proto,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use super::loader::Kernel;
use crate::config::model::FlowTimeouts;

/// The idle limits, from `edge.flow_timeouts`.
pub type Timeouts = FlowTimeouts;

/// The kernel refreshes `last_seen_ns` at most once a second: an entry
/// may look this much idler than it is.
const TOUCH_SLACK: Duration = Duration::from_secs(1);

/// Whether a flow entry (with its other direction, if still there) has been
/// idle longer than its state allows. TCP state comes from both halves: a
/// RST either way, or a FIN each way, means closing; a reply means
/// established. An entry whose other half is gone (evicted by the LRU, and
/// not yet put back by the kernel) goes after `tcp_closing`.
pub fn is_expired(
    entry: &FlowValue,
    peer: Option<&FlowValue>,
    proto: u8,
    now_ns: u64,
    timeouts: &Timeouts,
) -> bool {
    let last = peer.map_or(entry.last_seen_ns, |p| {
        p.last_seen_ns.max(entry.last_seen_ns)
    });
    let idle = Duration::from_nanos(now_ns.saturating_sub(last));
    let limit = match peer {
        None => timeouts.tcp_closing,
        Some(_) if proto == ip_proto::UDP => timeouts.udp,
        Some(peer) => {
            let either = entry.state | peer.state;
            let both = entry.state & peer.state;
            if either & FLOW_RST != 0 || both & FLOW_FIN != 0 {
                timeouts.tcp_closing
            } else if either & FLOW_REPLIED != 0 {
                timeouts.tcp_established
            } else {
                timeouts.tcp_new
            }
        }
    };
    idle > limit + TOUCH_SLACK
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One pass over the flow table: removes expired flows (both directions)
/// and adds them to the apps' `flow_expired` / `flow_expired_tc` counters. Returns the number
/// of flows removed per app.
pub fn collect(kernel: &mut Kernel, timeouts: &Timeouts) -> anyhow::Result<BTreeMap<u32, u64>> {
    let now = monotonic_now_ns();
    let mut removed_flows = Removed::default();
    let mut flows = kernel.flows()?;
    // Keys first: deleting while iterating restarts the kernel's walk. A
    // walk that restarts anyway (the kernel programs delete too) may list a
    // key twice: the set keeps one.
    let keys: BTreeSet<FlowKey> = flows.keys().filter_map(Result::ok).collect();
    // Flows that stay, for the per-client recount (`kernel::clients`).
    let mut live = Vec::new();
    for key in keys {
        // Read again just before deciding: a packet may have come meanwhile.
        let Ok(value) = flows.get(&key, 0) else {
            continue;
        };
        let peer_key = value.peer_key(key.proto);
        let peer = flows.get(&peer_key, 0).ok();
        if !is_expired(&value, peer.as_ref(), key.proto, now, timeouts) {
            live.push((key, value));
            continue;
        }
        let removed = flows.remove(&key).is_ok();
        let _ = flows.remove(&peer_key);
        // Count each flow once: by its client-to-origin half (or by an
        // orphan of either kind).
        if removed && (value.direction == DIR_TO_ORIGIN || peer.is_none()) {
            removed_flows.add(&value);
        }
    }
    record_expired(kernel, &removed_flows)?;
    super::clients::recount(kernel, &live)?;
    Ok(removed_flows.per_app())
}

/// Flows removed, per (app slot, hook that opened them).
#[derive(Default)]
struct Removed(BTreeMap<(u32, u8), u64>);

impl Removed {
    fn add(&mut self, flow: &FlowValue) {
        *self.0.entry((flow.app, flow.hook)).or_default() += 1;
    }

    /// Per app slot, whichever hook.
    fn per_app(&self) -> BTreeMap<u32, u64> {
        let mut per_app = BTreeMap::new();
        for ((app, _), count) in &self.0 {
            *per_app.entry(*app).or_default() += count;
        }
        per_app
    }
}

/// Removes the flows (both directions) whose client `cut` says must go,
/// given the client's address and the app index of the flow; counts them
/// as `flow_expired` (or `flow_expired_tc`). Returns the number removed per app.
pub fn cut_flows(
    kernel: &mut Kernel,
    mut cut: impl FnMut(&mut Kernel, IpAddr, u32) -> bool,
) -> anyhow::Result<BTreeMap<u32, u64>> {
    let to_origin: Vec<(FlowKey, FlowValue)> = kernel
        .flows()?
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, value)| value.direction == DIR_TO_ORIGIN)
        .collect();
    let mut removed = Removed::default();
    for (key, value) in to_origin {
        if !cut(kernel, ip_of(key.src), value.app) {
            continue;
        }
        let mut flows = kernel.flows()?;
        if flows.remove(&key).is_ok() {
            removed.add(&value);
        }
        let _ = flows.remove(&value.peer_key(key.proto));
    }
    record_expired(kernel, &removed)?;
    Ok(removed.per_app())
}

/// The address a 16-byte map address stands for (IPv4 when mapped).
pub fn ip_of(addr: [u8; 16]) -> IpAddr {
    IpAddr::from(addr).to_canonical()
}

/// Adds to the per-CPU `flow_expired` / `flow_expired_tc` counters.
fn record_expired(kernel: &mut Kernel, removed: &Removed) -> anyhow::Result<()> {
    let rows = removed.0.iter().map(|((app, hook), count)| {
        let counter = Counter {
            packets: *count,
            bytes: 0,
        };
        (*app, Verdict::flow_expired(*hook), counter)
    });
    super::stats::add(kernel, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    /// A timeout boundary: idle past `limit` plus the touch slack.
    const SLACK: u64 = 1;

    fn entry(state: u8, last_seen_s: u64) -> FlowValue {
        FlowValue {
            state,
            last_seen_ns: last_seen_s * S,
            ..FlowValue::default()
        }
    }

    #[test]
    fn tcp_timeouts_follow_the_state_of_both_halves() {
        let t = Timeouts::default();
        let tcp = ip_proto::TCP;
        let syn = entry(0, 100);
        let replied = entry(FLOW_REPLIED, 100);
        let fin = entry(FLOW_FIN, 100);
        let rst = entry(FLOW_RST, 100);
        assert!(!is_expired(&syn, Some(&syn), tcp, (129 + SLACK) * S, &t));
        assert!(is_expired(&syn, Some(&syn), tcp, (131 + SLACK) * S, &t));
        assert!(
            !is_expired(&syn, Some(&replied), tcp, 131 * S, &t),
            "reply seen"
        );
        assert!(is_expired(
            &syn,
            Some(&replied),
            tcp,
            (3701 + SLACK) * S,
            &t
        ));
        // One FIN is a half-close: the other side may still send for long.
        assert!(!is_expired(&fin, Some(&replied), tcp, 200 * S, &t));
        let fin_replied = entry(FLOW_FIN | FLOW_REPLIED, 100);
        assert!(is_expired(
            &fin,
            Some(&fin_replied),
            tcp,
            (111 + SLACK) * S,
            &t
        ));
        assert!(!is_expired(&fin, Some(&fin_replied), tcp, 109 * S, &t));
        assert!(is_expired(&replied, Some(&rst), tcp, (111 + SLACK) * S, &t));
    }

    #[test]
    fn the_most_recent_half_counts() {
        let t = Timeouts::default();
        let old = entry(0, 0);
        let fresh = entry(0, 1000);
        assert!(!is_expired(&old, Some(&fresh), ip_proto::UDP, 1050 * S, &t));
        assert!(is_expired(
            &old,
            Some(&fresh),
            ip_proto::UDP,
            (1061 + SLACK) * S,
            &t
        ));
    }

    #[test]
    fn an_orphaned_half_goes_soon() {
        let t = Timeouts::default();
        let orphan = entry(FLOW_REPLIED, 100);
        assert!(!is_expired(&orphan, None, ip_proto::TCP, 105 * S, &t));
        assert!(is_expired(
            &orphan,
            None,
            ip_proto::TCP,
            (111 + SLACK) * S,
            &t
        ));
    }

    #[test]
    fn the_touch_slack_protects_a_flow_refreshed_less_than_a_second_ago() {
        let t = Timeouts {
            udp: Duration::from_secs(1),
            ..Timeouts::default()
        };
        // last_seen can lag the last packet by up to a second.
        let e = entry(0, 100);
        assert!(!is_expired(
            &e,
            Some(&e),
            ip_proto::UDP,
            101 * S + S / 2,
            &t
        ));
        assert!(is_expired(&e, Some(&e), ip_proto::UDP, 102 * S + 1, &t));
    }

    #[test]
    fn map_addresses_read_back_as_ipv4_when_mapped() {
        let v4 = proxy_common::v4_mapped([10, 0, 1, 2]);
        assert_eq!(ip_of(v4), "10.0.1.2".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "fd00:1::2".parse().unwrap();
        assert_eq!(ip_of(crate::kernel::maps::addr16(v6)), v6);
    }

    #[test]
    fn a_clock_behind_the_entry_is_not_expiry() {
        let t = Timeouts::default();
        let e = entry(0, 100);
        assert!(!is_expired(&e, Some(&e), ip_proto::UDP, 50 * S, &t));
    }
}
