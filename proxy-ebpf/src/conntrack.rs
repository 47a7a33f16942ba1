//! Connection tracking in two tables, both directions of a flow in each.
//! A new flow is embryonic, in `NEW_FLOWS` (an LRU with its own budget),
//! until its TCP handshake completes (the client's ACK after the origin's
//! SYN-ACK) or the origin answers (UDP); then both halves move to `FLOWS`,
//! a plain hash map that never evicts: however many embryonic flows a
//! flood opens, it only pushes out other embryonic ones. The agent removes
//! idle flows from both (`kernel/conntrack_gc.rs`).
//!
//! A NAT tuple (an origin-side reverse key) is never held by two flows: a
//! new flow takes one only when it is in neither table, or when it is an
//! embryonic half idle past the embryonic timeout, whose flow then finds
//! its other half gone and leaves. Established TCP flows judge RSTs and
//! SYNs (RFC 5961 in spirit): a RST far from its sender's tracked sequence
//! number, or a SYN from the origin's side, is dropped and changes nothing.
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
};
use proxy_common::{
    AppValue, DIR_TO_CLIENT, DIR_TO_ORIGIN, FLOW_FIN, FLOW_HANDSHAKE, FLOW_REPLIED, FLOW_RST,
    FlowKey, FlowValue, HOOK_TC, MAX_FLOW_ENTRIES, MAX_NEW_FLOW_ENTRIES, TCP_ACK, TCP_FIN, TCP_RST,
    TCP_SYN, Verdict, ip_proto, tuple_hash,
};

use crate::{apps, parse::Packet, pools, stats};

#[map]
static FLOWS: HashMap<FlowKey, FlowValue> = HashMap::with_max_entries(MAX_FLOW_ENTRIES, 0);
#[map]
static NEW_FLOWS: LruHashMap<FlowKey, FlowValue> =
    LruHashMap::with_max_entries(MAX_NEW_FLOW_ENTRIES, 0);

/// Room to build the two entries of a new flow and their keys: the BPF
/// stack (512 bytes for the whole call chain) cannot hold them beside the
/// rest of the program's state.
#[map]
static SCRATCH: PerCpuArray<FlowValue> = PerCpuArray::with_max_entries(2, 0);
#[map]
static SCRATCH_KEYS: PerCpuArray<FlowKey> = PerCpuArray::with_max_entries(2, 0);

/// NAT source ports tried before a new flow is refused.
const NAT_PROBES: u32 = 8;
/// `last_seen_ns` is refreshed at most this often (fewer shared writes).
const TOUCH_INTERVAL_NS: u64 = 1_000_000_000;
/// `FlowValue::seq` moves on only when a packet is this far ahead of it:
/// a busy flow's entry is written once per 64 KiB, not per packet.
const SEQ_STEP: u32 = 64 * 1024;
/// A RST is in window when its sequence number is at most this far behind
/// its sender's tracked one (data in flight the receiver has not acked)...
const RST_BEHIND: u32 = 512 * 1024;
/// ...or this far ahead: the step the tracked number lags by, and one
/// 64 KiB (GSO) segment. The sender's own RST carries its next sequence
/// number, always inside; a blind one lands inside once in about 6,500.
const RST_AHEAD: u32 = SEQ_STEP + 64 * 1024;

/// Maps a random or hashed u32 onto 0..n by its high bits, without a
/// division (whose zero check the verifier cannot see past).
#[inline(always)]
pub fn scale(random: u32, n: u32) -> u32 {
    ((random as u64 * n as u64) >> 32) as u32
}

#[inline(always)]
fn key_of(packet: &Packet) -> FlowKey {
    FlowKey {
        src: packet.src,
        dst: packet.dst,
        src_port: packet.src_port,
        dst_port: packet.dst_port,
        proto: packet.proto,
        _pad: [0; 3],
    }
}

/// A flow entry found for a packet, and which table holds it.
pub struct Tracked {
    pub entry: *mut FlowValue,
    embryonic: bool,
}

/// What [`touch`] made of a tracked packet.
pub enum Seen {
    /// Rewrite with this entry and send.
    Send(*mut FlowValue),
    /// Dropped, the flow left as it was.
    Drop(Verdict),
    /// The entry was stale (its other half gone or another flow's) and is
    /// removed: the packet is handled as untracked.
    Gone,
}

/// The tracked flow this packet belongs to, in either direction:
/// established flows first (the hot path is one lookup), then embryonic.
/// The key is built in `SCRATCH_KEYS[0]`: the program's own stack frame
/// has no 40 bytes to spare.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
pub fn lookup(packet: &Packet) -> Option<Tracked> {
    let key = SCRATCH_KEYS.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot, used by this program run alone.
    let key = unsafe { &mut *key };
    *key = key_of(packet);
    if let Some(entry) = FLOWS.get_ptr_mut(&*key) {
        return Some(Tracked {
            entry,
            embryonic: false,
        });
    }
    NEW_FLOWS.get_ptr_mut(&*key).map(|entry| Tracked {
        entry,
        embryonic: true,
    })
}

/// Records activity and TCP state on a flow entry, and judges RSTs and
/// SYNs. Once a second it also refreshes the other direction's entry.
#[inline(always)]
pub(crate) fn touch(flow: Tracked, packet: &Packet) -> Seen {
    if flow.embryonic {
        return touch_embryonic(flow.entry, packet);
    }
    // SAFETY: `flow` points into the flow map, valid for this program run.
    let entry = unsafe { &mut *flow.entry };
    if packet.proto == ip_proto::TCP {
        let flags = packet.tcp_flags;
        if flags & (TCP_SYN | TCP_RST) != 0 {
            if let Some(verdict) = syn_or_rst(entry, packet) {
                return Seen::Drop(verdict);
            }
        } else {
            // Entries are shared by all CPUs: write only what changed, so
            // a busy flow does not bounce its cache line on every packet.
            let ahead = packet.tcp_seq.wrapping_sub(entry.seq);
            if ahead > SEQ_STEP && ahead < 1 << 31 {
                entry.seq = packet.tcp_seq;
            }
            if flags & TCP_FIN != 0 && entry.state & FLOW_FIN == 0 {
                entry.state |= FLOW_FIN;
            }
            if entry.state & FLOW_HANDSHAKE != 0 && entry.direction == DIR_TO_ORIGIN {
                handshake_done(entry, packet);
            }
        }
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(entry.last_seen_ns) > TOUCH_INTERVAL_NS {
        entry.last_seen_ns = now;
        // Look the next hop up again: routes and neighbours change.
        entry.hop_ifindex = 0;
        if !refresh_peer(entry, packet, now) {
            return Seen::Gone;
        }
    }
    Seen::Send(flow.entry)
}

/// The other half of `entry` in `FLOWS` (or `NEW_FLOWS`), when it points
/// back at the packet's sender; its key is left in `SCRATCH_KEYS[1]`.
// `&*key` hands the helpers a pointer into the scratch map; the by-value
// form clippy suggests would copy the key onto the stack.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn peer_of(entry: &FlowValue, packet: &Packet, embryonic: bool) -> Option<&'static mut FlowValue> {
    let key = SCRATCH_KEYS.get_ptr_mut(1)?;
    // SAFETY: this CPU's scratch slot, used by this program run alone.
    let key = unsafe { &mut *key };
    *key = entry.peer_key(packet.proto);
    let peer = if embryonic {
        NEW_FLOWS.get_ptr_mut(&*key)?
    } else {
        FLOWS.get_ptr_mut(&*key)?
    };
    // SAFETY: points into a flow map.
    let peer = unsafe { &mut *peer };
    // Both ends: one client port may reach two edge addresses of an app
    // that share an origin and a source.
    let back = peer.new_dst == packet.src
        && peer.new_dst_port == packet.src_port
        && peer.new_src == packet.dst
        && peer.new_src_port == packet.dst_port;
    back.then_some(peer)
}

/// Keeps the other half's `last_seen_ns` with this one's, so a one-way
/// flow (syslog, statsd) stays alive for the collector; false (this half
/// removed) when the other half is gone: the collector removes both, and
/// this one is a leftover.
#[inline(never)]
fn refresh_peer(entry: &FlowValue, packet: &Packet, now: u64) -> bool {
    if let Some(peer) = peer_of(entry, packet, false) {
        peer.last_seen_ns = now;
        return true;
    }
    remove_own(packet, false);
    false
}

/// Removes the packet's own entry (its key built in `SCRATCH_KEYS[0]`, not
/// on the stack).
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn remove_own(packet: &Packet, embryonic: bool) {
    let Some(key) = SCRATCH_KEYS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot, used by this program run alone.
    let key = unsafe { &mut *key };
    *key = key_of(packet);
    let _ = if embryonic {
        NEW_FLOWS.remove(&*key)
    } else {
        FLOWS.remove(&*key)
    };
}

/// A RST or SYN on an established TCP flow: the verdict when dropped.
#[inline(never)]
fn syn_or_rst(entry: &mut FlowValue, packet: &Packet) -> Option<Verdict> {
    let flags = packet.tcp_flags;
    if flags & TCP_RST != 0 {
        // While a reopened tuple's handshake runs, the numbers tracked are
        // the old connection's: its RSTs are taken as an embryonic flow's.
        let ahead = packet.tcp_seq.wrapping_sub(entry.seq);
        if entry.state & FLOW_HANDSHAKE == 0
            && ahead > RST_AHEAD
            && ahead.wrapping_neg() > RST_BEHIND
        {
            return Some(Verdict::RstInvalid);
        }
        if entry.state & FLOW_RST == 0 {
            entry.state |= FLOW_RST;
        }
        return None;
    }
    if entry.direction == DIR_TO_CLIENT {
        // The origin's: only the SYN-ACK of a handshake under way, or the
        // one seen again (its ACK to the client was lost).
        if flags & TCP_ACK != 0
            && (entry.state & FLOW_HANDSHAKE != 0 || packet.tcp_seq == entry.seq)
        {
            entry.seq = packet.tcp_seq;
            return None;
        }
        return Some(Verdict::StraySyn);
    }
    // The client's SYN: a retransmission or a new connection on the tuple.
    // It reopens the flow only once the old connection is closing;
    // otherwise it passes and changes nothing (the origin answers it with
    // an ACK, whose RST from the client is in window).
    if flags & TCP_ACK != 0 {
        return None;
    }
    let peer = peer_of(entry, packet, false)?;
    let either = entry.state | peer.state;
    let both = entry.state & peer.state;
    if either & FLOW_RST != 0 || both & FLOW_FIN != 0 {
        entry.state = FLOW_HANDSHAKE;
        entry.seq = packet.tcp_seq;
        peer.state = FLOW_HANDSHAKE;
    }
    None
}

/// The client's ACK on a reopened flow: its handshake is complete.
#[inline(never)]
fn handshake_done(entry: &mut FlowValue, packet: &Packet) {
    if packet.tcp_flags & TCP_ACK == 0 {
        return;
    }
    let Some(peer) = peer_of(entry, packet, false) else {
        return;
    };
    // Only the ACK of the origin's new SYN-ACK (see `touch_embryonic`).
    if packet.tcp_ack != peer.seq.wrapping_add(1) {
        return;
    }
    peer.state &= !FLOW_HANDSHAKE;
    entry.state &= !FLOW_HANDSHAKE;
}

/// A packet of an embryonic flow. Its other half is checked every time
/// (embryonic packets are few): gone, or another flow's since a new flow
/// took the NAT tuple over, and this half goes too.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(never)]
fn touch_embryonic(entry_ptr: *mut FlowValue, packet: &Packet) -> Seen {
    // SAFETY: points into NEW_FLOWS, valid for this program run.
    let entry = unsafe { &mut *entry_ptr };
    let Some(peer) = peer_of(entry, packet, true) else {
        remove_own(packet, true);
        return Seen::Gone;
    };
    let flags = packet.tcp_flags;
    let complete = if packet.proto != ip_proto::TCP {
        // UDP: the origin's first reply.
        entry.direction == DIR_TO_CLIENT
    } else if flags & TCP_RST != 0 {
        // Refused or given up: the collector removes it at `tcp_new`.
        entry.state |= FLOW_RST;
        false
    } else if entry.direction == DIR_TO_CLIENT {
        if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
            entry.state |= FLOW_REPLIED;
            entry.seq = packet.tcp_seq;
        }
        false
    } else {
        // The client's ACK of the origin's SYN-ACK (its ISN + 1, which
        // only a client that saw the SYN-ACK knows): a blind ACK from a
        // spoofed source does not make a flow established.
        flags & (TCP_SYN | TCP_ACK) == TCP_ACK
            && peer.state & FLOW_REPLIED != 0
            && packet.tcp_ack == peer.seq.wrapping_add(1)
    };
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(entry.last_seen_ns) > TOUCH_INTERVAL_NS {
        entry.last_seen_ns = now;
        entry.hop_ifindex = 0;
        peer.last_seen_ns = now;
    }
    if complete {
        // A RST seen while embryonic (spoofed, or a refused attempt before
        // this one) says nothing of the connection now established.
        entry.state &= !FLOW_RST;
        peer.state &= !FLOW_RST;
        return promote(entry_ptr, peer, packet);
    }
    Seen::Send(entry_ptr)
}

/// Moves both halves of an embryonic flow to `FLOWS` (reverse first, then
/// forward, both NOEXIST; the reverse rolled back if the forward fails),
/// counts the flow opened, and removes them from `NEW_FLOWS`. When
/// `FLOWS` is full the flow stays embryonic (the agent's gauge shows the
/// table full and it warns). The peer's key is in `SCRATCH_KEYS[1]`.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(never)]
fn promote(entry_ptr: *mut FlowValue, peer: &FlowValue, packet: &Packet) -> Seen {
    let (Some(own_key), Some(peer_key)) =
        (SCRATCH_KEYS.get_ptr_mut(0), SCRATCH_KEYS.get_ptr_mut(1))
    else {
        return Seen::Send(entry_ptr);
    };
    // SAFETY: this CPU's scratch slots, used by this program run alone.
    let (own_key, peer_key) = unsafe { (&mut *own_key, &*peer_key) };
    *own_key = key_of(packet);
    // SAFETY: points into NEW_FLOWS, valid for this program run.
    let entry = unsafe { &*entry_ptr };
    let (forward_key, forward, reverse_key, reverse) = if entry.direction == DIR_TO_ORIGIN {
        (&*own_key, entry, peer_key, peer)
    } else {
        (peer_key, peer, &*own_key, entry)
    };
    if FLOWS
        .insert(reverse_key, reverse, BPF_NOEXIST as u64)
        .is_err()
    {
        // Full, or another CPU promoted it first.
        return match FLOWS.get_ptr_mut(&*own_key) {
            Some(established) => Seen::Send(established),
            None => Seen::Send(entry_ptr),
        };
    }
    if FLOWS
        .insert(forward_key, forward, BPF_NOEXIST as u64)
        .is_err()
    {
        let _ = FLOWS.remove(reverse_key);
        return Seen::Send(entry_ptr);
    }
    let opened = if forward.hook == HOOK_TC {
        Verdict::FlowOpenedTc
    } else {
        Verdict::FlowOpened
    };
    stats::count(forward.app, opened, 0);
    let _ = NEW_FLOWS.remove(peer_key);
    let _ = NEW_FLOWS.remove(&*own_key);
    match FLOWS.get_ptr_mut(&*own_key) {
        Some(established) => Seen::Send(established),
        None => Seen::Gone,
    }
}

/// Opens an embryonic flow for the first packet of a client: picks an
/// origin of the client's family and a free NAT source port (its reverse
/// key in neither table, or an embryonic half idle past its timeout), and
/// inserts both directions into `NEW_FLOWS`, marked with the hook
/// (`HOOK_XDP`, `HOOK_TC`) that opened them.
/// Returns the forward (client -> origin) entry, valid for this packet.
// `&*scratch` hands the helpers pointers into the scratch map; the
// by-value form clippy suggests would copy keys and values onto the stack.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(never)]
pub fn open(
    packet: &Packet,
    app_index: u32,
    app: &AppValue,
    hook: u8,
) -> Result<*mut FlowValue, Verdict> {
    let settings = apps::settings().ok_or(Verdict::NatFailed)?;
    // The same client tuple gets the same origin, source and NAT port from
    // any agent run (see `tuple_hash`).
    let hash = tuple_hash(&packet.src, &packet.dst, packet.src_port, packet.dst_port);
    // The source takes the hash's low byte first (`rotate_left(24)`), the
    // origin the byte above it, the NAT port the high bits: each choice
    // spreads on its own.
    let source =
        pools::origin_source(packet.ipv6, hash.rotate_left(24)).ok_or(Verdict::NoOrigin)?;
    // The NAT port takes the hash's high bits (`scale`): the origin takes
    // others, so that each origin still gets the whole port range.
    let origin = apps::origin_for(app_index, app, packet.ipv6, hash.rotate_left(16))
        .ok_or(Verdict::NoOrigin)?;
    let origin_port = origin
        .port_start
        .wrapping_add(packet.dst_port.wrapping_sub(app.edge_port_start));
    let to_client = SCRATCH.get_ptr_mut(0).ok_or(Verdict::NatFailed)?;
    let to_origin = SCRATCH.get_ptr_mut(1).ok_or(Verdict::NatFailed)?;
    let forward = SCRATCH_KEYS.get_ptr_mut(0).ok_or(Verdict::NatFailed)?;
    let reverse = SCRATCH_KEYS.get_ptr_mut(1).ok_or(Verdict::NatFailed)?;
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: this CPU's scratch slots, used by this program run alone.
    let (to_client, to_origin, forward, reverse) = unsafe {
        (
            &mut *to_client,
            &mut *to_origin,
            &mut *forward,
            &mut *reverse,
        )
    };
    *forward = key_of(packet);
    to_client.new_src = packet.dst;
    to_client.new_dst = packet.src;
    to_client.new_src_port = packet.dst_port;
    to_client.new_dst_port = packet.src_port;
    to_client.app = app_index;
    to_client.last_seen_ns = now;
    to_client.state = 0;
    to_client.direction = DIR_TO_CLIENT;
    to_client.hook = hook;
    // Scratch slots keep what the last flow left: no next hop yet.
    to_client.hop_ifindex = 0;
    // The origin's sequence number comes with its SYN-ACK.
    to_client.seq = 0;
    to_origin.new_src = *source;
    to_origin.new_dst = origin.addr;
    to_origin.new_dst_port = origin_port;
    to_origin.app = app_index;
    to_origin.last_seen_ns = now;
    to_origin.state = 0;
    to_origin.direction = DIR_TO_ORIGIN;
    to_origin.hook = hook;
    to_origin.hop_ifindex = 0;
    to_origin.seq = packet.tcp_seq;
    reverse.src = origin.addr;
    reverse.dst = *source;
    reverse.src_port = origin_port;
    reverse.proto = packet.proto;
    let (min, max) = (settings.nat_port_min, settings.nat_port_max);
    let span = if max >= min {
        (max - min) as u32 + 1
    } else {
        1
    };
    let stale_s = if packet.proto == ip_proto::TCP {
        settings.tcp_new_s
    } else {
        settings.udp_unreplied_s
    };
    let stale_ns = stale_s as u64 * 1_000_000_000;
    for probe in 0..NAT_PROBES {
        let nat_port = if probe == 0 {
            // The client's port folded into the range: itself when inside,
            // and one port per client port over any span of them (Linux's
            // 28,232 ephemeral ports fit the default range). One client's
            // connections then never share a NAT tuple, whose TIME_WAIT at
            // the origin would refuse the other's SYN (PAWS: timestamps
            // run per client tuple).
            min.wrapping_add((packet.src_port.wrapping_sub(min) as u32 % span) as u16)
        } else {
            let pick = hash.wrapping_add(probe.wrapping_mul(0x9E37_79B9));
            min.wrapping_add(scale(pick, span) as u16)
        };
        reverse.dst_port = nat_port;
        if !reverse_free(reverse, now, stale_ns) {
            continue;
        }
        // NOEXIST unless taking a stale half over (then any: it may have
        // gone meanwhile). Either way a half only embryonic flows use.
        let flag = if NEW_FLOWS.get_ptr(&*reverse).is_some() {
            BPF_ANY
        } else {
            BPF_NOEXIST
        };
        if NEW_FLOWS
            .insert(&*reverse, &*to_client, flag as u64)
            .is_err()
        {
            continue;
        }
        to_origin.new_src_port = nat_port;
        if NEW_FLOWS
            .insert(&*forward, &*to_origin, BPF_NOEXIST as u64)
            .is_ok()
        {
            return Ok(to_origin);
        }
        // Another CPU opened this very flow first: undo ours, use theirs.
        let _ = NEW_FLOWS.remove(&*reverse);
        return match NEW_FLOWS.get_ptr_mut(&*forward) {
            Some(existing) => Ok(existing),
            None => Err(Verdict::NatFailed),
        };
    }
    Err(Verdict::NatFailed)
}

/// Whether a new flow may take the reverse key `reverse` (a NAT tuple):
/// no established flow has it, and no embryonic one, or only one idle for
/// `stale_ns` (its client gave up; its forward half leaves when it finds
/// this half another flow's).
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn reverse_free(reverse: &FlowKey, now: u64, stale_ns: u64) -> bool {
    if FLOWS.get_ptr(reverse).is_some() {
        return false;
    }
    match NEW_FLOWS.get_ptr(reverse) {
        // SAFETY: points into NEW_FLOWS.
        Some(half) => now.wrapping_sub(unsafe { (*half).last_seen_ns }) > stale_ns,
        None => true,
    }
}

/// The two halves [`open`] just inserted, in `NEW_FLOWS` (their keys are
/// still in `SCRATCH_KEYS`; `open` returns the scratch copy), for the SYN
/// proxy to fill in: (to origin, to client).
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
pub fn opened() -> Option<(*mut FlowValue, *mut FlowValue)> {
    let forward = SCRATCH_KEYS.get_ptr(0)?;
    let reverse = SCRATCH_KEYS.get_ptr(1)?;
    // SAFETY: this CPU's scratch slots, used by this program run alone.
    let forward = NEW_FLOWS.get_ptr_mut(unsafe { &*forward })?;
    let reverse = NEW_FLOWS.get_ptr_mut(unsafe { &*reverse })?;
    Some((forward, reverse))
}

/// The other half of a flow entry, established or embryonic, when it
/// points back at the packet's sender.
#[inline(always)]
pub fn peer(entry: &FlowValue, packet: &Packet) -> Option<&'static mut FlowValue> {
    match peer_of(entry, packet, false) {
        Some(peer) => Some(peer),
        None => peer_of(entry, packet, true),
    }
}

/// Moves an embryonic flow (the packet's entry and its other half) to
/// `FLOWS`, counted opened: the SYN proxy's, once the origin answered.
/// Returns the packet's entry in `FLOWS`.
#[inline(never)]
pub(crate) fn establish(entry_ptr: *mut FlowValue, packet: &Packet) -> Option<*mut FlowValue> {
    // SAFETY: points into NEW_FLOWS, valid for this program run.
    let entry = unsafe { &*entry_ptr };
    let peer = peer_of(entry, packet, true)?;
    match promote(entry_ptr, peer, packet) {
        Seen::Send(established) => Some(established),
        _ => None,
    }
}

/// Removes a flow: the packet's own entry and, given, its other half
/// (whose key is read before anything is removed), from both tables.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(never)]
pub fn remove_flow(packet: &Packet, entry: Option<&FlowValue>) {
    if let Some(entry) = entry
        && let Some(key) = SCRATCH_KEYS.get_ptr_mut(1)
    {
        // SAFETY: this CPU's scratch slot, used by this program run alone.
        let key = unsafe { &mut *key };
        *key = entry.peer_key(packet.proto);
        let _ = FLOWS.remove(&*key);
        let _ = NEW_FLOWS.remove(&*key);
    }
    remove_own(packet, false);
    remove_own(packet, true);
}
