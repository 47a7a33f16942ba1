//! The per-CPU verdict counters: read and summed per app, the agent's own
//! counts added, a slot cleared for a new app. What each verdict counts:
//! `docs/datapath.md`.
use std::{borrow::Borrow, path::Path};

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuArray};
use proxy_common::{Counter, GLOBAL_SLOT, MAX_APPS, Verdict, stats_index};

/// Total of one (slot, verdict) counter over all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsRow {
    /// App index, or `None` for packets of no app.
    pub app: Option<u32>,
    pub verdict: Verdict,
    pub packets: u64,
    pub bytes: u64,
}

/// Sums one counter's per-CPU values.
pub fn sum_per_cpu(values: &[Counter]) -> Counter {
    values.iter().fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets.wrapping_add(c.packets),
        bytes: acc.bytes.wrapping_add(c.bytes),
    })
}

/// The non-zero counters of the app slots below `app_count` and of the
/// global row.
pub fn read<T: Borrow<MapData>>(
    stats: &PerCpuArray<T, Counter>,
    app_count: u32,
) -> anyhow::Result<Vec<StatsRow>> {
    let slots = (0..app_count.min(MAX_APPS))
        .map(Some)
        .chain(std::iter::once(None));
    let mut rows = Vec::new();
    for app in slots {
        for verdict in Verdict::ALL {
            let index = stats_index(app.unwrap_or(GLOBAL_SLOT), verdict);
            let values = stats
                .get(&index, 0)
                .with_context(|| format!("reading counter {index}"))?;
            let total = sum_per_cpu(&values);
            // Bytes alone count too: the agent adds bytes of connections
            // still open to rows whose count moves when they close.
            if total.packets > 0 || total.bytes > 0 {
                rows.push(StatsRow {
                    app,
                    verdict,
                    packets: total.packets,
                    bytes: total.bytes,
                });
            }
        }
    }
    Ok(rows)
}

/// Adds agent-side counts (flows it expired, connections it proxied) to
/// the counters, in CPU 0's slot: the kernel programs never write these
/// verdicts, so nothing races with the read-modify-write.
pub fn add(
    kernel: &mut super::loader::Kernel,
    rows: impl IntoIterator<Item = (u32, Verdict, Counter)>,
) -> anyhow::Result<()> {
    let mut stats = kernel.stats()?;
    for (app, verdict, add) in rows {
        let index = stats_index(app, verdict);
        let mut values: Vec<Counter> = stats
            .get(&index, 0)
            .with_context(|| format!("reading {}", verdict.name()))?
            .iter()
            .copied()
            .collect();
        if let Some(first) = values.first_mut() {
            first.packets += add.packets;
            first.bytes += add.bytes;
        }
        let values = aya::maps::PerCpuValues::try_from(values).context("per-CPU values")?;
        stats
            .set(index, values, 0)
            .with_context(|| format!("writing {}", verdict.name()))?;
    }
    Ok(())
}

/// Sets the counters of app slot `app` to zero on every CPU: a slot handed
/// to a new app starts clean.
pub fn clear_slot(kernel: &mut super::loader::Kernel, app: u32) -> anyhow::Result<()> {
    let mut stats = kernel.stats()?;
    let cpus = aya::util::nr_cpus().map_err(|(_, err)| err)?;
    for verdict in Verdict::ALL {
        let zeros = aya::maps::PerCpuValues::try_from(vec![Counter::default(); cpus])
            .context("per-CPU values")?;
        stats
            .set(stats_index(app, verdict), zeros, 0)
            .with_context(|| format!("clearing {}", verdict.name()))?;
    }
    Ok(())
}

/// One app's counters in a few figures, whichever path carried it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AppTotals {
    /// Packets the fast path (XDP or TC) forwarded or handed to the agent.
    pub packets: u64,
    /// Payload and packet bytes: fast-path packets, plus what the agent
    /// moved both ways.
    pub bytes: u64,
    /// Flows (fast path) and connections or UDP flows (agent) opened.
    pub opened: u64,
    /// ... and ended.
    pub closed: u64,
    /// Dropped by an access rule.
    pub blocked: u64,
    /// Lost to a failure: NAT, route, TLS, origin, limit, bad reply.
    /// (Idle timeouts are ordinary ends, counted in `closed` only.)
    pub failed: u64,
}

/// Sums `rows` into one `AppTotals` per app slot that has rows.
pub fn app_totals(rows: &[StatsRow]) -> std::collections::BTreeMap<u32, AppTotals> {
    use Verdict as V;
    let mut totals = std::collections::BTreeMap::<u32, AppTotals>::new();
    for row in rows {
        let Some(slot) = row.app else {
            continue;
        };
        let total = totals.entry(slot).or_default();
        match row.verdict {
            V::ToOrigin | V::ToClient | V::NeighborPending | V::ToAgent => {
                total.packets += row.packets;
                // Agent apps' bytes are counted by the agent, not here.
                if row.verdict != V::ToAgent {
                    total.bytes += row.bytes;
                }
            }
            V::FlowOpened | V::FlowOpenedTc => total.opened += row.packets,
            V::FlowExpired | V::FlowExpiredTc => total.closed += row.packets,
            V::ConnAccepted => {
                total.opened += row.packets;
                total.bytes += row.bytes;
            }
            V::ConnClosed => {
                total.closed += row.packets;
                total.bytes += row.bytes;
            }
            V::BlockedIp | V::BlockedRange | V::BlockedAsn | V::BlockedCountry => {
                total.blocked += row.packets;
            }
            V::NatFailed
            | V::NoRoute
            | V::TlsFailed
            | V::OriginFailed
            | V::ConnLimited
            | V::BadReply => total.failed += row.packets,
            _ => {}
        }
    }
    totals
}

/// Opens the counters a running agent pinned at `path`.
pub fn open_pinned(path: &Path) -> anyhow::Result<PerCpuArray<MapData, Counter>> {
    let data = MapData::from_pin(path).with_context(|| {
        format!(
            "no counters pinned at {}: is `proxy-agent run` running with this --instance?",
            path.display()
        )
    })?;
    let map = Map::from_map_data(data).context("pinned map")?;
    PerCpuArray::try_from(map).context("pinned map is not the counter array")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_totals_sum_both_paths_by_meaning() {
        let row = |app, verdict, packets, bytes| StatsRow {
            app,
            verdict,
            packets,
            bytes,
        };
        let rows = [
            row(Some(0), Verdict::ToOrigin, 10, 1000),
            row(Some(0), Verdict::ToClient, 5, 700),
            row(Some(0), Verdict::FlowOpened, 2, 0),
            row(Some(0), Verdict::FlowExpired, 1, 0),
            row(Some(0), Verdict::FlowOpenedTc, 3, 0),
            row(Some(0), Verdict::FlowExpiredTc, 2, 0),
            row(Some(0), Verdict::BlockedCountry, 3, 180),
            row(Some(1), Verdict::ToAgent, 4, 400),
            row(Some(1), Verdict::ConnAccepted, 1, 50),
            row(Some(1), Verdict::ConnClosed, 1, 70),
            row(Some(1), Verdict::OriginFailed, 2, 0),
            row(None, Verdict::NoListener, 9, 900),
            row(Some(7), Verdict::ToOrigin, 9, 900),
        ];
        let totals = app_totals(&rows);
        assert_eq!(totals.len(), 3, "one entry per slot with rows");
        assert_eq!(totals[&7].packets, 9);
        assert_eq!(
            [totals[&0], totals[&1]],
            [
                AppTotals {
                    packets: 15,
                    bytes: 1700,
                    opened: 5,
                    closed: 3,
                    blocked: 3,
                    failed: 0,
                },
                AppTotals {
                    packets: 4,
                    bytes: 120,
                    opened: 1,
                    closed: 1,
                    blocked: 0,
                    failed: 2,
                },
            ]
        );
    }

    #[test]
    fn sums_all_cpus() {
        let cpus = [
            Counter {
                packets: 1,
                bytes: 60,
            },
            Counter::default(),
            Counter {
                packets: 2,
                bytes: 1500,
            },
        ];
        assert_eq!(
            sum_per_cpu(&cpus),
            Counter {
                packets: 3,
                bytes: 1560
            }
        );
        assert_eq!(sum_per_cpu(&[]), Counter::default());
    }
}
