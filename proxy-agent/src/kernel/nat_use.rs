//! How much of the NAT's port space each (origin address and port, origin
//! source) tuple uses: every fast-path flow toward it holds one of
//! `edge.nat_ports`, so a busy origin runs out at that many flows per
//! source (`nat_failed`). Counted from the live flows the collector's
//! complete walk gathered; the busiest tuples are published in `/metrics`
//! and one past [`WARN_PERCENT`] of its ports is logged, rate-limited.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use proxy_common::{DIR_TO_ORIGIN, FlowKey, FlowValue};
use tracing::warn;

use super::conntrack_gc::ip_of;

/// Tuples published at most: the busiest ones (an app with a port range
/// has a tuple per origin port).
pub const NAT_USE_ROWS: usize = 64;
/// Use of a tuple's ports, in percent, past which the agent warns.
pub const WARN_PERCENT: u64 = 80;
/// One warning per tuple at most this often.
const WARN_EVERY: Duration = Duration::from_secs(300);

/// Flows holding NAT ports of one (origin, source) tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatUse {
    pub origin: SocketAddr,
    pub source: IpAddr,
    pub flows: u64,
}

/// The busiest [`NAT_USE_ROWS`] tuples of `live` (client-to-origin halves;
/// others are skipped), busiest first.
pub fn nat_use(live: &[(FlowKey, FlowValue)]) -> Vec<NatUse> {
    let mut counts: HashMap<(SocketAddr, IpAddr), u64> = HashMap::new();
    for (_, value) in live.iter().filter(|(_, v)| v.direction == DIR_TO_ORIGIN) {
        let origin = SocketAddr::new(ip_of(value.new_dst), value.new_dst_port);
        *counts.entry((origin, ip_of(value.new_src))).or_default() += 1;
    }
    let mut rows: Vec<NatUse> = counts
        .into_iter()
        .map(|((origin, source), flows)| NatUse {
            origin,
            source,
            flows,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.flows
            .cmp(&a.flows)
            .then_with(|| (a.origin, a.source).cmp(&(b.origin, b.source)))
    });
    rows.truncate(NAT_USE_ROWS);
    rows
}

/// The warnings for tuples near their capacity, at most one per tuple per
/// [`WARN_EVERY`]; remembers only tuples over the mark (bounded by
/// [`NAT_USE_ROWS`]).
#[derive(Default)]
pub struct NatWarnings {
    last: HashMap<(SocketAddr, IpAddr), Instant>,
}

impl NatWarnings {
    /// Logs each tuple of `rows` using [`WARN_PERCENT`] or more of
    /// `capacity` ports, unless it was logged lately; returns how many it
    /// logged.
    pub fn check(&mut self, rows: &[NatUse], capacity: u32, now: Instant) -> usize {
        let capacity = u64::from(capacity.max(1));
        let over: Vec<&NatUse> = rows
            .iter()
            .filter(|row| row.flows * 100 >= capacity * WARN_PERCENT)
            .collect();
        self.last
            .retain(|tuple, _| over.iter().any(|row| (row.origin, row.source) == *tuple));
        let mut logged = 0;
        for row in over {
            let tuple = (row.origin, row.source);
            if self
                .last
                .get(&tuple)
                .is_some_and(|at| now.duration_since(*at) < WARN_EVERY)
            {
                continue;
            }
            self.last.insert(tuple, now);
            logged += 1;
            warn!(
                origin = %row.origin,
                source = %row.source,
                flows = row.flows,
                nat_ports = capacity,
                "NAT ports toward this origin nearly used up: new flows fail (nat_failed) \
                 when none is left; widen edge.nat_ports or add edge.origin_source addresses"
            );
        }
        logged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::maps::addr16;
    use proxy_common::DIR_TO_CLIENT;

    fn flow(origin: [u8; 4], port: u16, source: [u8; 4], direction: u8) -> (FlowKey, FlowValue) {
        (
            FlowKey::default(),
            FlowValue {
                new_dst: addr16(IpAddr::from(origin)),
                new_dst_port: port,
                new_src: addr16(IpAddr::from(source)),
                direction,
                ..FlowValue::default()
            },
        )
    }

    #[test]
    fn counts_forward_halves_per_origin_tuple_busiest_first() {
        let live = [
            flow([192, 0, 2, 1], 80, [10, 0, 2, 11], DIR_TO_ORIGIN),
            flow([192, 0, 2, 1], 80, [10, 0, 2, 11], DIR_TO_ORIGIN),
            flow([192, 0, 2, 1], 80, [10, 0, 2, 12], DIR_TO_ORIGIN),
            flow([192, 0, 2, 1], 81, [10, 0, 2, 11], DIR_TO_ORIGIN),
            // A reply half holds no port of its own.
            flow([192, 0, 2, 1], 80, [10, 0, 2, 11], DIR_TO_CLIENT),
        ];
        let rows = nat_use(&live);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].origin, "192.0.2.1:80".parse().unwrap());
        assert_eq!(rows[0].source, "10.0.2.11".parse::<IpAddr>().unwrap());
        assert_eq!(rows[0].flows, 2);
        assert_eq!(rows.iter().map(|r| r.flows).sum::<u64>(), 4);
    }

    #[test]
    fn rows_are_bounded() {
        let live: Vec<_> = (0..200u16)
            .map(|port| flow([192, 0, 2, 1], port, [10, 0, 2, 11], DIR_TO_ORIGIN))
            .collect();
        assert_eq!(nat_use(&live).len(), NAT_USE_ROWS);
    }

    #[test]
    fn warns_past_the_mark_once_per_period() {
        let row = |flows| NatUse {
            origin: "192.0.2.1:80".parse().unwrap(),
            source: "10.0.2.11".parse().unwrap(),
            flows,
        };
        let mut warnings = NatWarnings::default();
        let now = Instant::now();
        assert_eq!(warnings.check(&[row(79)], 100, now), 0, "under 80%");
        assert_eq!(warnings.check(&[row(80)], 100, now), 1);
        assert_eq!(
            warnings.check(&[row(90)], 100, now + Duration::from_secs(1)),
            0
        );
        assert_eq!(warnings.check(&[row(90)], 100, now + WARN_EVERY), 1);
        // Below the mark, then over again: a new episode warns at once.
        assert_eq!(warnings.check(&[row(10)], 100, now + WARN_EVERY * 2), 0);
        assert_eq!(warnings.check(&[row(95)], 100, now + WARN_EVERY * 2), 1);
    }
}
