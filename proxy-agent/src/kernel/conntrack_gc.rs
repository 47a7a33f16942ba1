//! Removes idle and closed flows from the kernel's two flow tables
//! (`FLOWS`, established; `NEW_FLOWS`, embryonic), and the flows of
//! clients new access rules block, and counts the established ones per
//! app (`flow_expired`, or `flow_expired_tc` for flows opened at TC
//! ingress: the kernel counts a flow opened when it becomes established).
//! A SYN-proxied flow whose origin never answered (`FLOW_ORIGIN_PENDING`
//! past `tcp_new`) is counted `syn_proxy_origin_failed` instead, and its
//! client, whose handshake the kernel completed, is sent a RST
//! (`kernel::rst`): nothing in the kernel would ever tell it.
//!
//! The collector runs on a thread of its own ([`spawn`]), so a flood
//! never holds up the agent's main loop (signals, reloads, the API), and
//! looks at a bounded number of keys per table per pass, carrying on
//! where it stopped: aya 0.14's `HashMap` has no batch lookups (only
//! `get`, `insert`, `remove` and a `get_next_key` walk from the start),
//! so the walk is resumed with `BPF_MAP_GET_NEXT_KEY` directly.
use proxy_common::{
    ClientKey, ClientLimitValue, ClientValue, Counter, DIR_TO_CLIENT, DIR_TO_ORIGIN, FLOW_FIN,
    FLOW_HANDSHAKE, FLOW_ORIGIN_PENDING, FLOW_RST, FlowKey, FlowValue, MAX_FLOW_ENTRIES,
    MAX_NEW_FLOW_ENTRIES, Verdict, ip_proto,
};
use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{Arc, Mutex, mpsc as std_mpsc},
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use tracing::warn;

use super::{
    loader::{FlowTable, Kernel},
    nat_use::{NatUse, nat_use},
    rst::{Rst, RstSender},
};
use crate::config::model::FlowTimeouts;

/// The idle limits, from `edge.flow_timeouts`.
pub type Timeouts = FlowTimeouts;

/// The kernel refreshes `last_seen_ns` at most once a second: an entry
/// may look this much idler than it is.
const TOUCH_SLACK: Duration = Duration::from_secs(1);

/// Keys looked at per table per pass: about three syscalls each, so a
/// pass is a fraction of a second however full the tables are; a full
/// `FLOWS` is walked in eight passes.
pub const KEYS_PER_PASS: usize = 32_768;
/// Live flows one complete walk gathers for the recount at most: both
/// tables' flows (a walk that restarts may list some twice).
const MAX_LIVE: usize = (MAX_FLOW_ENTRIES + MAX_NEW_FLOW_ENTRIES) as usize;
/// RSTs to clients of SYN-proxied flows whose origin never answered, per
/// pass at most: a flood of good cookies toward a dead origin is a burst
/// of these; the rest are counted, not answered.
pub const MAX_RSTS_PER_PASS: usize = 1024;

/// Whether a flow entry (with its other direction, if still there) has been
/// idle longer than its state allows. Embryonic entries (`NEW_FLOWS`) have
/// `tcp_new` or `udp_unreplied`. Established TCP state comes from both
/// halves: a RST either way, or a FIN each way, means closing; a new
/// handshake on the tuple (`FLOW_HANDSHAKE`) `tcp_new`. An established
/// entry whose other half is gone goes after `tcp_closing`.
pub fn is_expired(
    entry: &FlowValue,
    peer: Option<&FlowValue>,
    proto: u8,
    embryonic: bool,
    now_ns: u64,
    timeouts: &Timeouts,
) -> bool {
    let last = peer.map_or(entry.last_seen_ns, |p| {
        p.last_seen_ns.max(entry.last_seen_ns)
    });
    let idle = Duration::from_nanos(now_ns.saturating_sub(last));
    let limit = match peer {
        _ if embryonic && proto == ip_proto::UDP => timeouts.udp_unreplied,
        _ if embryonic => timeouts.tcp_new,
        None => timeouts.tcp_closing,
        Some(_) if proto == ip_proto::UDP => timeouts.udp,
        Some(peer) => {
            let either = entry.state | peer.state;
            let both = entry.state & peer.state;
            if either & FLOW_RST != 0 || both & FLOW_FIN != 0 {
                timeouts.tcp_closing
            } else if either & FLOW_HANDSHAKE != 0 {
                timeouts.tcp_new
            } else {
                timeouts.tcp_established
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

/// One table's collector: its handle and where the last pass stopped.
struct Walk {
    table: FlowTable,
    embryonic: bool,
    /// The key to carry on after (None: from the start).
    cursor: Option<FlowKey>,
    /// Keys seen since the walk last started from the top.
    seen: u64,
}

/// How full each table is (entries: two per flow), as [`spawn`]
/// publishes it: what its last complete walk counted, or more when the
/// walk under way has already seen more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub established: u64,
    pub embryonic: u64,
}

/// What `/metrics` shows of the flow tables: their fill, and the busiest
/// NAT tuples as of the last complete walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowView {
    pub occupancy: Occupancy,
    pub nat: Vec<super::nat_use::NatUse>,
}

/// The collector over both tables.
pub struct Collector {
    walks: [Walk; 2],
    pub occupancy: Occupancy,
    last_full_warning: Option<Instant>,
    /// Client-to-origin halves still live, since the established walk
    /// last started (with the embryonic ones seen meanwhile): the
    /// per-client recount's input (`kernel::clients`).
    live: std::collections::HashMap<FlowKey, FlowValue>,
    /// `live` of the last complete walk, until taken.
    pub finished_live: Option<Vec<(FlowKey, FlowValue)>>,
}

impl Collector {
    /// Over `tables` as `Kernel::flow_tables` gives them.
    pub fn new(tables: [FlowTable; 2]) -> Self {
        let [flows, new_flows] = tables;
        let walk = |table, embryonic| Walk {
            table,
            embryonic,
            cursor: None,
            seen: 0,
        };
        Collector {
            walks: [walk(flows, false), walk(new_flows, true)],
            occupancy: Occupancy::default(),
            last_full_warning: None,
            live: std::collections::HashMap::new(),
            finished_live: None,
        }
    }

    /// One bounded pass: up to `max_keys` keys of each table, from where
    /// the last pass stopped; expired flows removed (both halves). Returns
    /// the established flows removed, and the pending SYN-proxied ones
    /// with the RSTs their clients are owed (`Removed::rsts`).
    pub fn pass(&mut self, timeouts: &Timeouts, max_keys: usize) -> Removed {
        let now = monotonic_now_ns();
        let mut removed = Removed::default();
        for (index, walk) in self.walks.iter_mut().enumerate() {
            let (keys, ended) = next_keys(&walk.table, walk.cursor, max_keys);
            walk.seen += keys.len() as u64;
            let mut cursor = walk.cursor;
            for key in keys {
                if let Some(value) = collect_one(walk, &key, now, timeouts, &mut removed) {
                    // Carry on after a key still there: a walk from a
                    // deleted key starts over.
                    cursor = Some(key);
                    // By key: a walk that restarted lists keys twice, and
                    // a flow promoted meanwhile is met in both tables.
                    if value.direction == DIR_TO_ORIGIN && self.live.len() < MAX_LIVE {
                        self.live.insert(key, value);
                    }
                }
            }
            walk.cursor = cursor;
            // A walk of a big table takes passes: meanwhile the gauge shows
            // at least what this one has seen, so a table filling fast is
            // seen before its walk ends.
            // A walk that restarted lists keys twice: never more than fit.
            let (so_far, max) = if index == 0 {
                (&mut self.occupancy.established, MAX_FLOW_ENTRIES)
            } else {
                (&mut self.occupancy.embryonic, MAX_NEW_FLOW_ENTRIES)
            };
            *so_far = (*so_far).max(walk.seen.min(u64::from(max)));
            if ended {
                let seen = std::mem::take(&mut walk.seen);
                walk.cursor = None;
                if index == 0 {
                    self.occupancy.established = seen;
                    self.finished_live = Some(std::mem::take(&mut self.live).into_iter().collect());
                } else {
                    self.occupancy.embryonic = seen;
                }
            }
        }
        self.warn_when_full();
        removed
    }

    /// Established flows that find `FLOWS` full stay embryonic: say so, at
    /// most once a minute.
    fn warn_when_full(&mut self) {
        if self.occupancy.established * 10 < MAX_FLOW_ENTRIES as u64 * 9 {
            return;
        }
        if self
            .last_full_warning
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last_full_warning = Some(Instant::now());
        warn!(
            entries = self.occupancy.established,
            max = MAX_FLOW_ENTRIES,
            "the established flow table is 90% full or more: new flows stay embryonic \
             (and expire at tcp_new) once it is full"
        );
    }
}

/// Looks at one key; the entry when it stays (None: removed, or gone).
fn collect_one(
    walk: &mut Walk,
    key: &FlowKey,
    now: u64,
    timeouts: &Timeouts,
    removed: &mut Removed,
) -> Option<FlowValue> {
    // Read again just before deciding: a packet may have come meanwhile.
    let Ok(value) = walk.table.get(key, 0) else {
        return None;
    };
    let peer_key = value.peer_key(key.proto);
    // Only a peer that points back is this flow's other half (an
    // embryonic NAT tuple may have been taken over by another flow).
    let peer = walk.table.get(&peer_key, 0).ok().filter(|peer| {
        peer.new_dst == key.src
            && peer.new_dst_port == key.src_port
            && peer.new_src == key.dst
            && peer.new_src_port == key.dst_port
    });
    if !is_expired(
        &value,
        peer.as_ref(),
        key.proto,
        walk.embryonic,
        now,
        timeouts,
    ) {
        return Some(value);
    }
    let gone = walk.table.remove(key).is_ok();
    if peer.is_some() {
        let _ = walk.table.remove(&peer_key);
    }
    // One removal is one flow (both halves go together, and the other is
    // then never seen): counted whichever half the walk met first. Both
    // halves carry the same app and hook.
    if gone && !walk.embryonic {
        removed.add(&value);
    }
    if gone && walk.embryonic {
        removed.embryonic_gone(&value, peer.as_ref());
    }
    None
}

/// Up to `max` keys of `table` after `from` (from the start when None),
/// and whether the walk reached the end.
fn next_keys(table: &FlowTable, from: Option<FlowKey>, max: usize) -> (Vec<FlowKey>, bool) {
    let fd = table_fd(table);
    let mut keys = Vec::with_capacity(max.min(4096));
    let mut current = from;
    while keys.len() < max {
        match next_key(fd, current.as_ref()) {
            Some(next) => {
                keys.push(next);
                current = Some(next);
            }
            None => return (keys, true),
        }
    }
    (keys, false)
}

fn table_fd(table: &FlowTable) -> i32 {
    aya::maps::IterableMap::<FlowKey, FlowValue>::map(table)
        .fd()
        .as_fd()
        .as_raw_fd()
}

/// `BPF_MAP_GET_NEXT_KEY`: the key after `key` (the first when None, or
/// when `key` is gone); None at the end (or on an error, which ends the
/// pass: the next one starts again).
fn next_key(fd: i32, key: Option<&FlowKey>) -> Option<FlowKey> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        next_key: u64,
        flags: u64,
    }
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    let mut next = FlowKey::default();
    let attr = Attr {
        map_fd: fd as u32,
        _pad: 0,
        key: key.map_or(0, |k| k as *const FlowKey as u64),
        next_key: &mut next as *mut FlowKey as u64,
        flags: 0,
    };
    // SAFETY: attr points at a live key (or none) and a key-sized buffer,
    // the layout of bpf_attr's map element commands.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_GET_NEXT_KEY,
            &attr as *const Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    (rc == 0).then_some(next)
}

/// Stops the collector's thread when dropped (after its current pass,
/// which is bounded).
pub struct Running {
    stop: Option<std_mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one pass tells the main loop.
pub struct PassReport {
    /// The established flows it removed, to count.
    pub removed: Removed,
    /// How full the tables are.
    pub occupancy: Occupancy,
    /// After a complete walk: the busiest NAT tuples.
    pub nat: Option<Vec<NatUse>>,
}

/// What the collector's thread needs to make the kernel's per-client flow
/// counts true after each complete walk (`kernel::clients`).
pub struct Recount {
    pub clients: aya::maps::HashMap<aya::maps::MapData, ClientKey, ClientValue>,
    /// Each app's limits by slot, as the last map sync wrote them.
    pub limits: Arc<Mutex<Vec<ClientLimitValue>>>,
}

impl Recount {
    fn run(&mut self, live: &[(FlowKey, FlowValue)]) {
        let limits = self
            .limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Err(err) = super::clients::recount(&mut self.clients, &limits, live) {
            warn!("recounting per-client flows: {err:#}");
        }
    }
}

/// Runs the collector on a thread of its own, a pass every `every`, and
/// sends each pass's [`PassReport`] to `reports` for the main loop.
pub fn spawn(
    tables: [FlowTable; 2],
    mut recount: Recount,
    timeouts: Timeouts,
    every: Duration,
    reports: mpsc::Sender<PassReport>,
) -> std::io::Result<Running> {
    let (stop, stopped) = std_mpsc::channel::<()>();
    let mut collector = Collector::new(tables);
    let (sender, errors) = RstSender::open();
    for err in errors {
        warn!(
            "raw socket for SYN proxy RSTs: {err}: clients of origins that never answer get none"
        );
    }
    let mut rst_errors = RstErrors::default();
    let thread = std::thread::Builder::new()
        .name("flow-gc".into())
        .spawn(move || {
            // What the main loop has not taken yet: counts add up until it
            // does, so none is lost while it is busy.
            let mut pending = Removed::default();
            let mut nat = None;
            while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let mut removed = collector.pass(&timeouts, KEYS_PER_PASS);
                for rst in std::mem::take(&mut removed.rsts) {
                    if let Err(err) = sender.send(&rst) {
                        rst_errors.failed(&rst, &err);
                    }
                }
                pending.merge(removed);
                if let Some(live) = collector.finished_live.take() {
                    recount.run(&live);
                    nat = Some(nat_use(&live));
                }
                let report = PassReport {
                    removed: std::mem::take(&mut pending),
                    occupancy: collector.occupancy,
                    nat: nat.take(),
                };
                match reports.try_send(report) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(report)) => {
                        // The main loop is busy: keep its counts (and the
                        // newest walk's NAT use) for the next try.
                        pending = report.removed;
                        nat = report.nat;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        })?;
    Ok(Running {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// RSTs that could not be sent: said at most once a minute, with how many.
#[derive(Default)]
struct RstErrors {
    since_warning: u64,
    last_warning: Option<Instant>,
}

impl RstErrors {
    fn failed(&mut self, rst: &Rst, err: &std::io::Error) {
        self.since_warning += 1;
        if self
            .last_warning
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last_warning = Some(Instant::now());
        warn!(
            to = %rst.to,
            from = %rst.from,
            failed = std::mem::take(&mut self.since_warning),
            "RST to a SYN-proxied client whose origin never answered not sent: {err}"
        );
    }
}

/// Flows removed, per (app slot, hook that opened them); and the
/// SYN-proxied flows whose origin never answered, per app slot, with the
/// RSTs still to send to their clients.
#[derive(Debug, Default)]
pub struct Removed {
    expired: BTreeMap<(u32, u8), u64>,
    origin_failed: BTreeMap<u32, u64>,
    /// At most [`MAX_RSTS_PER_PASS`] (the collector's thread sends them).
    pub rsts: Vec<Rst>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty() && self.origin_failed.is_empty()
    }

    fn add(&mut self, flow: &FlowValue) {
        *self.expired.entry((flow.app, flow.hook)).or_default() += 1;
    }

    /// An expired embryonic flow (`flow`, the half met, and its `peer`):
    /// a SYN-proxied one still waiting for its origin is counted, and its
    /// client owed a RST (from the to-client half, which has the cookie).
    fn embryonic_gone(&mut self, flow: &FlowValue, peer: Option<&FlowValue>) {
        if !origin_never_answered(flow) {
            return;
        }
        *self.origin_failed.entry(flow.app).or_default() += 1;
        let to_client = [Some(flow), peer]
            .into_iter()
            .flatten()
            .find(|half| half.direction == DIR_TO_CLIENT);
        if self.rsts.len() < MAX_RSTS_PER_PASS
            && let Some(rst) = to_client.and_then(Rst::for_pending)
        {
            self.rsts.push(rst);
        }
    }

    /// Adds `other`'s counts to these (its RSTs are sent, not kept).
    fn merge(&mut self, other: Removed) {
        for (key, count) in other.expired {
            *self.expired.entry(key).or_default() += count;
        }
        for (app, count) in other.origin_failed {
            *self.origin_failed.entry(app).or_default() += count;
        }
    }

    /// Expired flows per app slot, whichever hook.
    pub fn per_app(&self) -> BTreeMap<u32, u64> {
        let mut per_app = BTreeMap::new();
        for ((app, _), count) in &self.expired {
            *per_app.entry(*app).or_default() += count;
        }
        per_app
    }

    /// SYN-proxied flows whose origin never answered, per app slot.
    pub fn origin_failed(&self) -> &BTreeMap<u32, u64> {
        &self.origin_failed
    }
}

/// Whether an expired embryonic entry is a SYN-proxied flow whose origin
/// never sent its SYN-ACK (the kernel's own refusals, an origin RST, are
/// counted there and remove the flow).
pub fn origin_never_answered(flow: &FlowValue) -> bool {
    flow.state & FLOW_ORIGIN_PENDING != 0
}

/// Removes the flows (both directions, either table) whose client `cut`
/// says must go, given the client's address and the app index of the
/// flow; counts the established ones as `flow_expired` (or
/// `flow_expired_tc`). Returns the number removed per app.
pub fn cut_flows(
    kernel: &mut Kernel,
    mut cut: impl FnMut(&mut Kernel, IpAddr, u32) -> bool,
) -> anyhow::Result<BTreeMap<u32, u64>> {
    cut_flows_where(kernel, |kernel, key, value| {
        cut(kernel, ip_of(key.src), value.app)
    })
}

/// [`cut_flows`] judged on the client-side key (client, edge address and
/// port) and the value of each flow's to-origin direction.
pub fn cut_flows_where(
    kernel: &mut Kernel,
    mut cut: impl FnMut(&mut Kernel, &FlowKey, &FlowValue) -> bool,
) -> anyhow::Result<BTreeMap<u32, u64>> {
    let mut removed = Removed::default();
    for embryonic in [false, true] {
        let table = if embryonic {
            Kernel::new_flows
        } else {
            Kernel::flows
        };
        let to_origin: Vec<(FlowKey, FlowValue)> = table(kernel)?
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, value)| value.direction == DIR_TO_ORIGIN)
            .collect();
        for (key, value) in to_origin {
            if !cut(kernel, &key, &value) {
                continue;
            }
            let mut flows = table(kernel)?;
            if flows.remove(&key).is_ok() && !embryonic {
                removed.add(&value);
            }
            let _ = flows.remove(&value.peer_key(key.proto));
        }
    }
    record_expired(kernel, &removed)?;
    Ok(removed.per_app())
}

/// The address a 16-byte map address stands for (IPv4 when mapped).
pub fn ip_of(addr: [u8; 16]) -> IpAddr {
    IpAddr::from(addr).to_canonical()
}

/// Adds to the per-CPU `flow_expired` / `flow_expired_tc` and
/// `syn_proxy_origin_failed` counters.
pub fn record_expired(kernel: &mut Kernel, removed: &Removed) -> anyhow::Result<()> {
    let counter = |count: &u64| Counter {
        packets: *count,
        bytes: 0,
    };
    let expired = (removed.expired.iter())
        .map(|((app, hook), count)| (*app, Verdict::flow_expired(*hook), counter(count)));
    let failed = (removed.origin_failed.iter())
        .map(|(app, count)| (*app, Verdict::SynProxyOriginFailed, counter(count)));
    super::stats::add(kernel, expired.chain(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    /// A timeout boundary: idle past `limit` plus the touch slack.
    const SLACK: u64 = 1;
    const EMBRYONIC: bool = true;
    const ESTABLISHED: bool = false;

    fn entry(state: u8, last_seen_s: u64) -> FlowValue {
        FlowValue {
            state,
            last_seen_ns: last_seen_s * S,
            ..FlowValue::default()
        }
    }

    #[test]
    fn embryonic_flows_go_at_their_short_timeouts_whatever_their_state() {
        let t = Timeouts::default();
        let (tcp, udp) = (ip_proto::TCP, ip_proto::UDP);
        let syn = entry(0, 100);
        // The SYN-ACK seen: still embryonic until the client's ACK.
        let replied = entry(proxy_common::FLOW_REPLIED, 100);
        for peer in [Some(&syn), Some(&replied), None] {
            assert!(!is_expired(
                &syn,
                peer,
                tcp,
                EMBRYONIC,
                (104 + SLACK) * S,
                &t
            ));
            assert!(is_expired(
                &syn,
                peer,
                tcp,
                EMBRYONIC,
                (106 + SLACK) * S,
                &t
            ));
        }
        assert!(!is_expired(
            &syn,
            Some(&syn),
            udp,
            EMBRYONIC,
            (104 + SLACK) * S,
            &t
        ));
        assert!(is_expired(
            &syn,
            Some(&syn),
            udp,
            EMBRYONIC,
            (106 + SLACK) * S,
            &t
        ));
        let long = Timeouts {
            tcp_new: Duration::from_secs(30),
            udp_unreplied: Duration::from_secs(20),
            ..t
        };
        assert!(!is_expired(
            &syn,
            Some(&syn),
            tcp,
            EMBRYONIC,
            129 * S,
            &long
        ));
        assert!(is_expired(
            &syn,
            Some(&syn),
            udp,
            EMBRYONIC,
            (121 + SLACK) * S,
            &long
        ));
    }

    /// A SYN-proxied flow waiting for its origin's SYN-ACK is embryonic:
    /// it goes at `tcp_new` like any other, is counted
    /// `syn_proxy_origin_failed` in its app's row, and its client is owed
    /// a RST from the to-client half, whichever half the walk meets.
    #[test]
    fn a_pending_syn_proxied_flow_goes_at_tcp_new_counted_with_a_rst_for_its_client() {
        use proxy_common::{FLOW_SYN_PROXY, HOOK_TC};
        let t = Timeouts::default();
        let pending = FLOW_SYN_PROXY | FLOW_ORIGIN_PENDING;
        let edge: IpAddr = "198.51.100.7".parse().unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let to_client = FlowValue {
            new_src: crate::kernel::maps::addr16(edge),
            new_dst: crate::kernel::maps::addr16(client),
            new_src_port: 443,
            new_dst_port: 40000,
            direction: DIR_TO_CLIENT,
            seq_adj: 1000,
            app: 3,
            hook: HOOK_TC,
            ..entry(pending, 100)
        };
        let to_origin = FlowValue {
            direction: DIR_TO_ORIGIN,
            seq_adj: 555,
            ..to_client
        };
        let tcp = ip_proto::TCP;
        let at = |s: u64| s * S;
        assert!(!is_expired(
            &to_origin,
            Some(&to_client),
            tcp,
            EMBRYONIC,
            at(104 + SLACK),
            &t
        ));
        assert!(is_expired(
            &to_origin,
            Some(&to_client),
            tcp,
            EMBRYONIC,
            at(106 + SLACK),
            &t
        ));
        let expected = Rst {
            from: std::net::SocketAddr::new(edge, 443),
            to: std::net::SocketAddr::new(client, 40000),
            seq: 1001,
        };
        for (met, peer) in [
            (&to_origin, Some(&to_client)),
            (&to_client, Some(&to_origin)),
        ] {
            let mut removed = Removed::default();
            removed.embryonic_gone(met, peer);
            assert_eq!(removed.origin_failed(), &BTreeMap::from([(3, 1)]));
            assert_eq!(removed.rsts, [expected]);
            assert!(removed.per_app().is_empty(), "not an expired flow");
            assert!(!removed.is_empty());
        }
        // Its to-client half already gone: counted, no RST (no cookie).
        let mut removed = Removed::default();
        removed.embryonic_gone(&to_origin, None);
        assert_eq!(removed.origin_failed(), &BTreeMap::from([(3, 1)]));
        assert!(removed.rsts.is_empty());
        // An ordinary embryonic flow (a SYN the origin never answered, or a
        // SYN-proxied flow its origin did answer): neither.
        for state in [0, FLOW_SYN_PROXY] {
            let mut removed = Removed::default();
            let half = FlowValue { state, ..to_client };
            removed.embryonic_gone(&half, Some(&half));
            assert!(removed.is_empty() && removed.rsts.is_empty());
        }
    }

    #[test]
    fn rsts_per_pass_are_bounded_and_the_rest_still_counted() {
        use proxy_common::FLOW_SYN_PROXY;
        let half = FlowValue {
            direction: DIR_TO_CLIENT,
            new_src: proxy_common::v4_mapped([198, 51, 100, 7]),
            new_dst: proxy_common::v4_mapped([203, 0, 113, 9]),
            ..entry(FLOW_SYN_PROXY | FLOW_ORIGIN_PENDING, 0)
        };
        let mut removed = Removed::default();
        for _ in 0..MAX_RSTS_PER_PASS + 10 {
            removed.embryonic_gone(&half, None);
        }
        assert_eq!(removed.rsts.len(), MAX_RSTS_PER_PASS);
        let count = (MAX_RSTS_PER_PASS + 10) as u64;
        assert_eq!(removed.origin_failed(), &BTreeMap::from([(0, count)]));
        // Merged counts add up; RSTs are not carried over.
        let mut total = Removed::default();
        total.merge(removed);
        assert_eq!(total.origin_failed()[&0], count);
        assert!(total.rsts.is_empty());
    }

    #[test]
    fn established_tcp_timeouts_follow_the_state_of_both_halves() {
        let t = Timeouts::default();
        let tcp = ip_proto::TCP;
        let open = entry(0, 100);
        let fin = entry(FLOW_FIN, 100);
        let rst = entry(FLOW_RST, 100);
        assert!(!is_expired(
            &open,
            Some(&open),
            tcp,
            ESTABLISHED,
            3600 * S,
            &t
        ));
        assert!(is_expired(
            &open,
            Some(&open),
            tcp,
            ESTABLISHED,
            (3701 + SLACK) * S,
            &t
        ));
        // One FIN is a half-close: the other side may still send for long.
        assert!(!is_expired(
            &fin,
            Some(&open),
            tcp,
            ESTABLISHED,
            200 * S,
            &t
        ));
        assert!(is_expired(
            &fin,
            Some(&fin),
            tcp,
            ESTABLISHED,
            (111 + SLACK) * S,
            &t
        ));
        assert!(!is_expired(&fin, Some(&fin), tcp, ESTABLISHED, 109 * S, &t));
        assert!(is_expired(
            &open,
            Some(&rst),
            tcp,
            ESTABLISHED,
            (111 + SLACK) * S,
            &t
        ));
        // A new handshake on a closed flow's tuple: tcp_new until its ACK.
        let reopened = entry(FLOW_HANDSHAKE, 100);
        assert!(!is_expired(
            &reopened,
            Some(&reopened),
            tcp,
            ESTABLISHED,
            104 * S,
            &t
        ));
        assert!(is_expired(
            &reopened,
            Some(&reopened),
            tcp,
            ESTABLISHED,
            (106 + SLACK) * S,
            &t
        ));
    }

    #[test]
    fn established_udp_keeps_the_udp_timeout() {
        let t = Timeouts::default();
        let e = entry(0, 100);
        assert!(!is_expired(
            &e,
            Some(&e),
            ip_proto::UDP,
            ESTABLISHED,
            150 * S,
            &t
        ));
        assert!(is_expired(
            &e,
            Some(&e),
            ip_proto::UDP,
            ESTABLISHED,
            (161 + SLACK) * S,
            &t
        ));
    }

    #[test]
    fn the_most_recent_half_counts() {
        let t = Timeouts::default();
        let old = entry(0, 0);
        let fresh = entry(0, 1000);
        let udp = ip_proto::UDP;
        assert!(!is_expired(
            &old,
            Some(&fresh),
            udp,
            ESTABLISHED,
            1050 * S,
            &t
        ));
        assert!(is_expired(
            &old,
            Some(&fresh),
            udp,
            ESTABLISHED,
            (1061 + SLACK) * S,
            &t
        ));
    }

    #[test]
    fn an_orphaned_established_half_goes_soon() {
        let t = Timeouts::default();
        let orphan = entry(0, 100);
        let tcp = ip_proto::TCP;
        assert!(!is_expired(&orphan, None, tcp, ESTABLISHED, 105 * S, &t));
        assert!(is_expired(
            &orphan,
            None,
            tcp,
            ESTABLISHED,
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
        let udp = ip_proto::UDP;
        assert!(!is_expired(
            &e,
            Some(&e),
            udp,
            ESTABLISHED,
            101 * S + S / 2,
            &t
        ));
        assert!(is_expired(&e, Some(&e), udp, ESTABLISHED, 102 * S + 1, &t));
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
        assert!(!is_expired(
            &e,
            Some(&e),
            ip_proto::UDP,
            ESTABLISHED,
            50 * S,
            &t
        ));
        assert!(!is_expired(
            &e,
            Some(&e),
            ip_proto::UDP,
            EMBRYONIC,
            50 * S,
            &t
        ));
    }
}
