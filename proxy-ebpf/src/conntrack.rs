//! Connection tracking: one LRU map holds both directions of every flow.
//! Opening a flow inserts the reverse entry first, then the forward one with
//! NOEXIST, and rolls the reverse back if the forward insert loses a race.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use proxy_common::{
    AppValue, DIR_TO_CLIENT, DIR_TO_ORIGIN, FLOW_FIN, FLOW_REPLIED, FLOW_RST, FlowKey, FlowValue,
    MAX_FLOW_ENTRIES, TCP_FIN, TCP_RST, Verdict, tuple_hash,
};

use crate::{apps, parse::Packet, pools};

#[map]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(MAX_FLOW_ENTRIES, 0);

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

/// The tracked flow this packet belongs to, in either direction.
#[inline(always)]
pub fn lookup(packet: &Packet) -> Option<*mut FlowValue> {
    FLOWS.get_ptr_mut(key_of(packet))
}

/// Records activity and TCP state on a flow entry. Once a second it also
/// looks after the other direction's entry (see [`refresh_peer`]); false
/// when that found this half broken and removed it.
#[inline(always)]
pub(crate) fn touch(flow: *mut FlowValue, packet: &Packet) -> bool {
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: `flow` points into the flow map, valid for this program run.
    let flow = unsafe { &mut *flow };
    let state = if packet.is_tcp_open() {
        // A new connection on a tuple whose last one closed: start over.
        0
    } else {
        let mut state = flow.state;
        if packet.tcp_flags & TCP_FIN != 0 {
            state |= FLOW_FIN;
        }
        if packet.tcp_flags & TCP_RST != 0 {
            state |= FLOW_RST;
        }
        if flow.direction == DIR_TO_CLIENT {
            state |= FLOW_REPLIED;
        }
        state
    };
    // Entries are shared by all CPUs: write only what changed, so a busy
    // flow does not bounce its cache line on every packet.
    if state != flow.state {
        flow.state = state;
    }
    if now.wrapping_sub(flow.last_seen_ns) > TOUCH_INTERVAL_NS {
        flow.last_seen_ns = now;
        // Look the next hop up again: routes and neighbours change.
        flow.hop_ifindex = 0;
        return refresh_peer(flow, packet, now);
    }
    true
}

/// The other direction of a flow: refreshed, so a one-way flow (syslog,
/// statsd) keeps both halves alive in the LRU and for the collector; put
/// back when the LRU evicted it; and when another flow has taken its key in
/// the meantime, this half is removed (its packets would be answered to the
/// other flow's client): the client's next packet opens a fresh flow.
// See `open` for the borrows.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(never)]
fn refresh_peer(flow: &FlowValue, packet: &Packet, now: u64) -> bool {
    let (Some(key), Some(value)) = (SCRATCH_KEYS.get_ptr_mut(1), SCRATCH.get_ptr_mut(0)) else {
        return true;
    };
    // SAFETY: this CPU's scratch slots, used by this program run alone.
    let (key, value) = unsafe { (&mut *key, &mut *value) };
    *key = flow.peer_key(packet.proto);
    if let Some(peer) = FLOWS.get_ptr_mut(&*key) {
        // SAFETY: points into the flow map.
        let peer = unsafe { &mut *peer };
        if peer.new_dst == packet.src && peer.new_dst_port == packet.src_port {
            peer.last_seen_ns = now;
            return true;
        }
        let _ = FLOWS.remove(&key_of(packet));
        return false;
    }
    value.new_src = packet.dst;
    value.new_dst = packet.src;
    value.new_src_port = packet.dst_port;
    value.new_dst_port = packet.src_port;
    value.app = flow.app;
    value.last_seen_ns = now;
    value.state = 0;
    value.direction = if flow.direction == DIR_TO_ORIGIN {
        DIR_TO_CLIENT
    } else {
        DIR_TO_ORIGIN
    };
    value.hop_ifindex = 0;
    // The scratch slot holds whatever the last flow opened on this CPU had.
    value.hook = flow.hook;
    let _ = FLOWS.insert(&*key, &*value, BPF_NOEXIST as u64);
    true
}

/// Opens a flow for the first packet of a client: picks an origin of the
/// client's family and a free NAT source port, and inserts both directions,
/// marked with the hook (`HOOK_XDP`, `HOOK_TC`) that opened them.
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
    to_origin.new_src = *source;
    to_origin.new_dst = origin.addr;
    to_origin.new_dst_port = origin_port;
    to_origin.app = app_index;
    to_origin.last_seen_ns = now;
    to_origin.state = 0;
    to_origin.direction = DIR_TO_ORIGIN;
    to_origin.hook = hook;
    to_origin.hop_ifindex = 0;
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
        if FLOWS
            .insert(&*reverse, &*to_client, BPF_NOEXIST as u64)
            .is_err()
        {
            continue;
        }
        to_origin.new_src_port = nat_port;
        if FLOWS
            .insert(&*forward, &*to_origin, BPF_NOEXIST as u64)
            .is_ok()
        {
            return Ok(to_origin);
        }
        // Another CPU opened this very flow first: undo ours, use theirs.
        let _ = FLOWS.remove(&*reverse);
        return match FLOWS.get_ptr_mut(&*forward) {
            Some(existing) => Ok(existing),
            None => Err(Verdict::NatFailed),
        };
    }
    Err(Verdict::NatFailed)
}
