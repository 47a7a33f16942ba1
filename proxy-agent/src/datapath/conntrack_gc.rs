//! Removes idle and closed flows from the kernel's flow table and counts
//! them per app (`flow_expired`). The kernel's LRU also evicts under
//! pressure; this keeps NAT ports free and the counters honest.
use std::{collections::BTreeMap, time::Duration};

use anyhow::Context as _;
use proxy_common::{
    Counter, DIR_TO_ORIGIN, FLOW_CLOSING, FLOW_ESTABLISHED, FlowKey, FlowValue, Verdict, ip_proto,
    stats_index,
};

use super::loader::Datapath;
use crate::config::model::FlowTimeouts;

/// The idle limits, from `edge.flow_timeouts`.
pub type Timeouts = FlowTimeouts;

/// Whether a flow entry (with its other direction, if still there) has been
/// idle longer than its state allows. An entry whose other half is gone
/// (evicted by the LRU) can carry no traffic: it goes after `tcp_closing`.
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
        Some(peer) => match peer.state.max(entry.state) {
            FLOW_CLOSING => timeouts.tcp_closing,
            FLOW_ESTABLISHED => timeouts.tcp_established,
            _ => timeouts.tcp_new,
        },
    };
    idle > limit
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
/// and adds them to the apps' `flow_expired` counters. Returns the number
/// of flows removed per app.
pub fn collect(datapath: &mut Datapath, timeouts: &Timeouts) -> anyhow::Result<BTreeMap<u32, u64>> {
    let now = monotonic_now_ns();
    let mut expired: Vec<(FlowKey, FlowValue)> = Vec::new();
    {
        let flows = datapath.flows()?;
        let entries: Vec<(FlowKey, FlowValue)> = flows.iter().filter_map(Result::ok).collect();
        for (key, value) in entries {
            let peer = flows.get(&value.peer_key(key.proto), 0).ok();
            if is_expired(&value, peer.as_ref(), key.proto, now, timeouts) {
                expired.push((key, value));
            }
        }
    }
    let mut per_app: BTreeMap<u32, u64> = BTreeMap::new();
    {
        let mut flows = datapath.flows()?;
        for (key, value) in &expired {
            // Either half may already be gone (the LRU, or its pair in this list).
            let _ = flows.remove(key);
            let _ = flows.remove(&value.peer_key(key.proto));
            if value.direction == DIR_TO_ORIGIN {
                *per_app.entry(value.app).or_default() += 1;
            }
        }
    }
    record_expired(datapath, &per_app)?;
    Ok(per_app)
}

/// Adds to the per-CPU `flow_expired` counters (CPU 0's slot: the XDP
/// program never writes this verdict, so there is no race).
fn record_expired(datapath: &mut Datapath, per_app: &BTreeMap<u32, u64>) -> anyhow::Result<()> {
    let mut stats = datapath.stats()?;
    for (app, count) in per_app {
        let index = stats_index(*app, Verdict::FlowExpired);
        let mut values: Vec<Counter> = stats
            .get(&index, 0)
            .context("reading flow_expired")?
            .iter()
            .copied()
            .collect();
        if let Some(first) = values.first_mut() {
            first.packets += count;
        }
        let values = aya::maps::PerCpuValues::try_from(values).context("per-CPU values")?;
        stats
            .set(index, values, 0)
            .context("writing flow_expired")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_common::FLOW_NEW;

    const S: u64 = 1_000_000_000;

    fn entry(state: u8, last_seen_s: u64) -> FlowValue {
        FlowValue {
            state,
            last_seen_ns: last_seen_s * S,
            ..FlowValue::default()
        }
    }

    #[test]
    fn tcp_timeouts_follow_the_most_advanced_state_of_both_halves() {
        let t = Timeouts::default();
        let tcp = ip_proto::TCP;
        let new = entry(FLOW_NEW, 100);
        let est = entry(FLOW_ESTABLISHED, 100);
        let closing = entry(FLOW_CLOSING, 100);
        assert!(!is_expired(&new, Some(&new), tcp, 129 * S, &t));
        assert!(is_expired(&new, Some(&new), tcp, 131 * S, &t));
        assert!(
            !is_expired(&new, Some(&est), tcp, 131 * S, &t),
            "reply seen"
        );
        assert!(is_expired(&est, Some(&est), tcp, 3701 * S, &t));
        assert!(is_expired(&est, Some(&closing), tcp, 111 * S, &t));
        assert!(!is_expired(&est, Some(&closing), tcp, 109 * S, &t));
    }

    #[test]
    fn the_most_recent_half_counts() {
        let t = Timeouts::default();
        let old = entry(FLOW_NEW, 0);
        let fresh = entry(FLOW_NEW, 1000);
        assert!(!is_expired(&old, Some(&fresh), ip_proto::UDP, 1050 * S, &t));
        assert!(is_expired(&old, Some(&fresh), ip_proto::UDP, 1061 * S, &t));
    }

    #[test]
    fn an_orphaned_half_goes_soon() {
        let t = Timeouts::default();
        let orphan = entry(FLOW_ESTABLISHED, 100);
        assert!(!is_expired(&orphan, None, ip_proto::TCP, 105 * S, &t));
        assert!(is_expired(&orphan, None, ip_proto::TCP, 111 * S, &t));
    }

    #[test]
    fn a_clock_behind_the_entry_is_not_expiry() {
        let t = Timeouts::default();
        let e = entry(FLOW_NEW, 100);
        assert!(!is_expired(&e, Some(&e), ip_proto::UDP, 50 * S, &t));
    }
}
