//! The SYN proxy (fast-path TCP apps with `AppFlags::SYN_PROXY`): the edge
//! answers a client's SYN itself, with a SYN-ACK whose sequence number is
//! a SYN cookie from the kernel's helpers, and keeps nothing. Only a
//! client whose ACK carries a valid cookie gets a flow, a NAT port and a
//! SYN toward the origin; the origin's SYN-ACK is answered in the kernel,
//! and from then on every packet of the flow has its sequence and
//! acknowledgement numbers, SACK blocks, timestamps and window translated
//! between the two handshakes (netfilter's SYNPROXY target does the same
//! behind conntrack; here the flow table holds the offsets).
//!
//! The SYN-ACK announces a zero window, as SYNPROXY's does: the client
//! completes its handshake but holds its data until the origin's side is
//! up, when the edge sends it a window update. No client data is lost or
//! held in the kernel; a client that sends anyway (a window probe) makes
//! the edge send its SYN to the origin again.
//!
//! When the client offers timestamps, the SYN-ACK's TSval carries what the
//! cookie cannot: the client's window scale, SACK and a finer MSS (the
//! client echoes it in the ACK's TSecr). Without timestamps the edge, like
//! the kernel's own cookies, offers no window scale and no SACK, and the
//! origin is told MSS 1300 (IPv4) or 1220 (IPv6).
//!
//! It runs as a program of its own, tail-called from the packet path
//! ([`crate::path`]) with the parsed packet in its per-CPU slot: the path's
//! 512-byte stack is full.
use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams},
    helpers::{
        bpf_ktime_get_ns, bpf_tcp_raw_check_syncookie_ipv4, bpf_tcp_raw_check_syncookie_ipv6,
        bpf_tcp_raw_gen_syncookie_ipv4, bpf_tcp_raw_gen_syncookie_ipv6,
    },
    macros::map,
    maps::{PerCpuArray, ProgramArray},
};
use proxy_common::{
    DIR_TO_ORIGIN, FLOW_FIN, FLOW_HANDSHAKE, FLOW_ORIGIN_PENDING, FLOW_RST, FLOW_SYN_PROXY,
    FlowValue, SYN_OPT_ORIGIN_NO_WS, SYN_OPT_SACK, SYN_OPT_TIMESTAMPS, SYN_OPT_WSCALE, TCP_ACK,
    TCP_FIN, TCP_RST, TCP_SYN, Verdict, csum,
};

use crate::{
    apps, client,
    conntrack::{self, Seen},
    forward::{self, Leaving},
    hook::{Hook, Outcome, ptr_at},
    parse::{self, Packet},
    path,
};

/// Slot 0: the SYN proxy program of each hook (the agent fills them).
#[map]
pub static SYN_PROXY_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static SYN_PROXY_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// What the packet path hands over: a SYN or an ACK of no flow for an
/// app (`app`), or a packet of a SYN-proxied flow.
pub const HAND_SYN: u32 = 0;
pub const HAND_ACK: u32 = 1;
pub const HAND_FLOW: u32 = 2;

#[repr(C)]
pub struct Handoff {
    pub kind: u32,
    pub app: u32,
}

#[map]
static HANDOFF: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);

/// Room to read a TCP header into and to build one (IP + TCP) in.
#[repr(C)]
struct Scratch {
    tcp: [u8; 64],
    out: [u8; 128],
    options: Options,
    segment: Segment,
    /// A TCP header with its sequence number moved on by one, for the
    /// cookie check of a zero-window probe.
    probe: [u8; 20],
}

#[map]
static SYN_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The window scale the edge announces to clients that offer one.
pub const EDGE_WS: u8 = 7;
/// MSS values the TSval can name (3 bits): the client's is rounded down.
const MSS_TABLE: [u16; 8] = [536, 1220, 1300, 1360, 1400, 1440, 1460, 8940];
/// The MSS the origin is told when the client's ACK has no timestamps.
const MSS_NO_TS_V4: u16 = 1300;
const MSS_NO_TS_V6: u16 = 1220;
/// Most the edge announces to a client (an Ethernet MTU behind it).
const MSS_MAX_V4: u16 = 1460;
const MSS_MAX_V6: u16 = 1440;
/// TCP headers the SYN proxy builds: a SYN or SYN-ACK with 24 bytes of
/// options, an ACK with 12 (timestamps, or NOPs).
const SYN_TCP_LEN: usize = 44;
const ACK_TCP_LEN: usize = 32;
const ETH_LEN: usize = 14;
const TCP_OPT_NOP: u8 = 1;

/// Hands a packet to the hook's SYN proxy program; returns only if it
/// could not (the program array is empty: an agent bug).
#[inline(always)]
pub fn hand<H: Hook>(ctx: &H, kind: u32, app: u32) {
    let Some(slot) = HANDOFF.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot, used by this program run alone.
    unsafe {
        (*slot).kind = kind;
        (*slot).app = app;
    }
    ctx.syn_proxy();
}

/// The SYN proxy program's body (for both hooks).
#[inline(always)]
pub fn run<H: Hook>(ctx: &H) -> H::Action {
    let frame_len = ctx.frame_len();
    match handle(ctx) {
        Some((slot, verdict, action)) => {
            crate::stats::count(slot, verdict, frame_len);
            action
        }
        None => H::PASS,
    }
}

#[inline(always)]
fn handle<H: Hook>(ctx: &H) -> Outcome<H::Action> {
    let handoff = HANDOFF.get_ptr(0)?;
    // SAFETY: this CPU's slot, written by the path just before the call.
    let (kind, index) = unsafe { ((*handoff).kind, (*handoff).app) };
    let packet = parse::current()?;
    if kind == HAND_FLOW {
        // Here, not under `flow_packet`: opening a flow takes the stack
        // of a call chain of its own.
        if let Some((index, isn)) = reopened(ctx, packet) {
            return Some(cookie_ack(ctx, packet, index, isn));
        }
        return Some(flow_packet(ctx, packet));
    }
    apps::app_for(index, packet.proto)?;
    Some(if kind == HAND_SYN {
        syn(ctx, packet, index)
    } else {
        match check_cookie(ctx, packet) {
            Some(isn) => cookie_ack(ctx, packet, index, isn),
            None => (index, Verdict::SynCookieBad, H::DROP),
        }
    })
}

/// The client's initial sequence number when the pure ACK `packet`
/// carries a cookie the kernel's check accepts. The check takes the ISN as
/// the ACK's sequence number - 1; a zero-window probe (the client's window
/// is 0 until the origin is up) carries the ISN itself (snd_una - 1), so it
/// is checked again with its sequence number moved on by one: a lost ACK
/// leaves the client probing, and its probe opens the flow.
#[inline(never)]
fn check_cookie<H: Hook>(ctx: &H, packet: &Packet) -> Option<u32> {
    if packet.tcp_flags & (TCP_SYN | TCP_RST | TCP_FIN | TCP_ACK) != TCP_ACK {
        return None;
    }
    let tcp: *mut [u8; 20] = ptr_at(ctx, packet.l4_offset).ok()?;
    let check = |th: *mut [u8; 20]| -> bool {
        let rc = if packet.ipv6 {
            let Ok(ip) = ptr_at::<[u8; 40]>(ctx, packet.l3_offset) else {
                return false;
            };
            unsafe { bpf_tcp_raw_check_syncookie_ipv6(ip as *mut _, th as *mut _) }
        } else {
            let Ok(ip) = ptr_at::<[u8; 20]>(ctx, packet.l3_offset) else {
                return false;
            };
            unsafe { bpf_tcp_raw_check_syncookie_ipv4(ip as *mut _, th as *mut _) }
        };
        rc == 0
    };
    if check(tcp) {
        return Some(packet.tcp_seq.wrapping_sub(1));
    }
    let scratch = SYN_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, used by this program run alone.
    let probe = unsafe { &mut (*scratch).probe };
    *probe = unsafe { *tcp };
    let seq = packet.tcp_seq.wrapping_add(1).to_be_bytes();
    probe[4] = seq[0];
    probe[5] = seq[1];
    probe[6] = seq[2];
    probe[7] = seq[3];
    check(probe as *mut [u8; 20]).then_some(packet.tcp_seq)
}

/// What a segment's options say.
#[repr(C)]
#[derive(Clone, Copy)]
struct Options {
    mss: u16,
    /// 0xFF: none.
    ws: u8,
    sack_ok: bool,
    /// Offset of the timestamp option (its kind byte) in the TCP header,
    /// 0 when absent.
    ts_at: usize,
    tsval: u32,
    tsecr: u32,
    /// Offset and length of the SACK option, 0 when absent.
    sack_at: usize,
    sack_len: usize,
}

#[inline(always)]
fn get4(bytes: &[u8; 64], at: usize) -> u32 {
    u32::from_be_bytes([
        bytes[at & 63],
        bytes[(at + 1) & 63],
        bytes[(at + 2) & 63],
        bytes[(at + 3) & 63],
    ])
}

/// The TCP header of `packet`, its length, read into scratch: options are
/// parsed there, where every offset is a masked index the verifier can
/// follow, not a packet pointer.
#[inline(always)]
fn read_tcp<H: Hook>(ctx: &H, packet: &Packet) -> Option<(&'static mut [u8; 64], usize)> {
    let scratch = SYN_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, used by this program run alone.
    let tcp = unsafe { &mut (*scratch).tcp };
    let first: *const [u8; 20] = ptr_at(ctx, packet.l4_offset).ok()?;
    let len = (unsafe { (*first)[12] } >> 4) as usize * 4;
    let len = len.clamp(20, 60);
    ctx.load(packet.l4_offset, tcp, len as u32).ok()?;
    Some((tcp, len))
}

/// What the options of the TCP header in scratch say; kept in scratch
/// too (a struct returned by value from a BPF function is not one the
/// verifier follows).
#[inline(always)]
fn options(tcp: &[u8; 64], len: usize) -> Option<&'static Options> {
    let scratch = SYN_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, used by this program run alone.
    let found = unsafe { &mut (*scratch).options };
    walk_options(tcp, len, found);
    Some(found)
}

/// Walks the TCP options (RFC 9293 3.2) byte by byte, over the 40 bytes
/// options can have: the position is the loop's own count and what is
/// left of an option a count the verifier need not follow, so it checks
/// a few states per byte, not one per path through the options.
#[inline(never)]
fn walk_options(tcp: &[u8; 64], len: usize, found: &mut Options) {
    *found = Options {
        mss: 0,
        ws: 0xFF,
        sack_ok: false,
        ts_at: 0,
        tsval: 0,
        tsecr: 0,
        sack_at: 0,
        sack_len: 0,
    };
    let mut skip = 0usize;
    for at in 20..60usize {
        if at >= len {
            break;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let kind = tcp[at & 63];
        if kind == 0 {
            break;
        }
        if kind == TCP_OPT_NOP {
            continue;
        }
        let size = tcp[(at + 1) & 63] as usize;
        if size < 2 || at + size > len {
            break;
        }
        match (kind, size) {
            (2, 4) => found.mss = u16::from_be_bytes([tcp[(at + 2) & 63], tcp[(at + 3) & 63]]),
            (3, 3) => found.ws = tcp[(at + 2) & 63].min(14),
            (4, 2) => found.sack_ok = true,
            (5, 10 | 18 | 26 | 34) => {
                found.sack_at = at;
                found.sack_len = size;
            }
            (8, 10) => {
                found.ts_at = at;
                found.tsval = get4(tcp, at + 2);
                found.tsecr = get4(tcp, at + 6);
            }
            _ => {}
        }
        skip = size - 1;
    }
}

/// The edge's TSval in its SYN-ACK: a millisecond clock whose low byte
/// names the client's options (window scale, SACK, MSS index).
#[inline(always)]
fn encode_ts(opts: &Options) -> u32 {
    let now_ms = (unsafe { bpf_ktime_get_ns() } / 1_000_000) as u32;
    let mss = if opts.mss == 0 { 536 } else { opts.mss };
    let mut index = 0u32;
    let mut i = 0;
    while i < MSS_TABLE.len() {
        if MSS_TABLE[i] <= mss {
            index = i as u32;
        }
        i += 1;
    }
    let ws = if opts.ws == 0xFF { 0xF } else { opts.ws as u32 };
    (now_ms & !0xFF) | index << 5 | (opts.sack_ok as u32) << 4 | ws
}

/// The client's options back from the cookie ACK's TSecr: (MSS, window
/// scale or 0xFF, SACK).
#[inline(always)]
fn decode_ts(tsecr: u32) -> (u16, u8, bool) {
    let ws = (tsecr & 0xF) as u8;
    let mss = MSS_TABLE[((tsecr >> 5) & 7) as usize];
    (mss, if ws == 0xF { 0xFF } else { ws }, tsecr & 0x10 != 0)
}

/// The fields of a segment the SYN proxy builds (in scratch: the stack
/// has no room for them).
#[repr(C)]
struct Segment {
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    /// SYN/SYN-ACK: 0 = no MSS option.
    mss: u16,
    /// Some((TSval, TSecr)).
    ts: Option<(u32, u32)>,
    /// 0xFF: no window scale option.
    ws: u8,
    sack_ok: bool,
}

/// A segment to build, in scratch: addresses, ports, numbers, flags and
/// window given, no options yet (the caller adds them).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn segment(
    src: &[u8; 16],
    dst: &[u8; 16],
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> Option<&'static mut Segment> {
    let scratch = SYN_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, used by this program run alone.
    let segment = unsafe { &mut (*scratch).segment };
    segment.src = *src;
    segment.dst = *dst;
    segment.src_port = src_port;
    segment.dst_port = dst_port;
    segment.seq = seq;
    segment.ack = ack;
    segment.flags = flags;
    segment.window = window;
    segment.mss = 0;
    segment.ts = None;
    segment.ws = 0xFF;
    segment.sack_ok = false;
    Some(segment)
}

/// Sums 16-bit big-endian words of `bytes[from..from + len]` (even `len`).
#[inline(always)]
fn sum(bytes: &[u8; 128], from: usize, len: usize, mut acc: u32) -> u32 {
    let mut i = 0;
    while i < len {
        acc += u16::from_be_bytes([bytes[(from + i) & 127], bytes[(from + i + 1) & 127]]) as u32;
        i += 2;
    }
    acc
}

#[inline(always)]
fn put4(out: &mut [u8; 128], at: usize, value: u32) {
    let b = value.to_be_bytes();
    out[at & 127] = b[0];
    out[(at + 1) & 127] = b[1];
    out[(at + 2) & 127] = b[2];
    out[(at + 3) & 127] = b[3];
}

/// Builds IP + TCP for `segment` in scratch, checksums included; returns
/// (the IP length, whether it is a SYN-sized header).
#[inline(never)]
fn build(out: &mut [u8; 128], ipv6: bool, segment: &Segment) -> usize {
    let syn = segment.flags & TCP_SYN != 0;
    let tcp_len = if syn { SYN_TCP_LEN } else { ACK_TCP_LEN };
    let ip_len = if ipv6 { 40 } else { 20 };
    let total = ip_len + tcp_len;
    if ipv6 {
        out[0] = 0x60;
        out[1] = 0;
        out[2] = 0;
        out[3] = 0;
        out[4] = 0;
        out[5] = tcp_len as u8;
        out[6] = 6;
        out[7] = 64;
        let mut i = 0;
        while i < 16 {
            out[8 + i] = segment.src[i];
            out[24 + i] = segment.dst[i];
            i += 1;
        }
    } else {
        out[0] = 0x45;
        out[1] = 0;
        out[2] = 0;
        out[3] = total as u8;
        // No fragment id needed with DF.
        out[4] = 0;
        out[5] = 0;
        out[6] = 0x40;
        out[7] = 0;
        out[8] = 64;
        out[9] = 6;
        out[10] = 0;
        out[11] = 0;
        let mut i = 0;
        while i < 4 {
            out[12 + i] = segment.src[12 + i];
            out[16 + i] = segment.dst[12 + i];
            i += 1;
        }
        let check = !csum::fold(sum(out, 0, 20, 0));
        let check = check.to_be_bytes();
        out[10] = check[0];
        out[11] = check[1];
    }
    let t = ip_len;
    let sp = segment.src_port.to_be_bytes();
    let dp = segment.dst_port.to_be_bytes();
    out[t] = sp[0];
    out[t + 1] = sp[1];
    out[t + 2] = dp[0];
    out[t + 3] = dp[1];
    put4(out, t + 4, segment.seq);
    put4(out, t + 8, segment.ack);
    out[t + 12] = ((tcp_len / 4) as u8) << 4;
    out[t + 13] = segment.flags;
    let window = segment.window.to_be_bytes();
    out[t + 14] = window[0];
    out[t + 15] = window[1];
    out[t + 16] = 0;
    out[t + 17] = 0;
    out[t + 18] = 0;
    out[t + 19] = 0;
    let mut o = t + 20;
    // Every option slot has its size whatever is in it: NOPs fill what
    // is not offered.
    let mut i = 0;
    while i < tcp_len - 20 {
        out[(o + i) & 127] = TCP_OPT_NOP;
        i += 1;
    }
    if syn {
        let mss = segment.mss.to_be_bytes();
        out[o & 127] = 2;
        out[(o + 1) & 127] = 4;
        out[(o + 2) & 127] = mss[0];
        out[(o + 3) & 127] = mss[1];
        o += 4;
    }
    if let Some((tsval, tsecr)) = segment.ts {
        out[(o + 2) & 127] = 8;
        out[(o + 3) & 127] = 10;
        put4(out, o + 4, tsval);
        put4(out, o + 8, tsecr);
    }
    o += 12;
    if syn {
        if segment.ws != 0xFF {
            out[(o + 1) & 127] = 3;
            out[(o + 2) & 127] = 3;
            out[(o + 3) & 127] = segment.ws;
        }
        o += 4;
        if segment.sack_ok {
            out[(o + 2) & 127] = 4;
            out[(o + 3) & 127] = 2;
        }
    }
    // The pseudo header: addresses, protocol, TCP length.
    let mut acc = 6 + tcp_len as u32;
    let (addr_at, addr_len) = if ipv6 { (8, 32) } else { (12, 8) };
    acc = sum(out, addr_at, addr_len, acc);
    acc = sum(out, t, tcp_len, acc);
    let check = (!csum::fold(acc)).to_be_bytes();
    out[t + 16] = check[0];
    out[t + 17] = check[1];
    total
}

/// Replaces the frame after Ethernet with the segment built in scratch.
#[inline(always)]
fn emit<H: Hook>(ctx: &H, ipv6: bool, total: usize) -> Result<(), Verdict> {
    let scratch = SYN_SCRATCH.get_ptr(0).ok_or(Verdict::Malformed)?;
    // SAFETY: this CPU's slot, used by this program run alone.
    let out = unsafe { &(*scratch).out };
    ctx.set_len((ETH_LEN + total) as u32)?;
    match (ipv6, total) {
        (false, 64) => ctx.put::<64>(ETH_LEN, first::<64>(out)),
        (false, _) => ctx.put::<52>(ETH_LEN, first::<52>(out)),
        (true, 84) => ctx.put::<84>(ETH_LEN, first::<84>(out)),
        (true, _) => ctx.put::<72>(ETH_LEN, first::<72>(out)),
    }
}

#[inline(always)]
fn first<const N: usize>(out: &[u8; 128]) -> &[u8; N] {
    // SAFETY: N <= 128, and [u8; N] has no alignment.
    unsafe { &*(out.as_ptr() as *const [u8; N]) }
}

#[inline(always)]
fn out_buf() -> Option<&'static mut [u8; 128]> {
    let scratch = SYN_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, used by this program run alone.
    Some(unsafe { &mut (*scratch).out })
}

/// A client's SYN: answered with a SYN cookie, nothing kept.
#[inline(never)]
fn syn<H: Hook>(ctx: &H, packet: &Packet, app: u32) -> (u32, Verdict, H::Action) {
    let drop = (app, Verdict::Malformed, H::DROP);
    let Some((tcp, len)) = read_tcp(ctx, packet) else {
        return drop;
    };
    let cookie = if packet.ipv6 {
        let Ok(ip) = ptr_at::<[u8; 40]>(ctx, packet.l3_offset) else {
            return drop;
        };
        unsafe {
            bpf_tcp_raw_gen_syncookie_ipv6(ip as *mut _, tcp.as_mut_ptr() as *mut _, len as u32)
        }
    } else {
        let Ok(ip) = ptr_at::<[u8; 20]>(ctx, packet.l3_offset) else {
            return drop;
        };
        unsafe {
            bpf_tcp_raw_gen_syncookie_ipv4(ip as *mut _, tcp.as_mut_ptr() as *mut _, len as u32)
        }
    };
    if cookie < 0 {
        return drop;
    }
    let Some(opts) = options(tcp, len) else {
        return drop;
    };
    let cap = if packet.ipv6 { MSS_MAX_V6 } else { MSS_MAX_V4 };
    let cookie_mss = ((cookie >> 32) & 0xFFFF) as u16;
    let timestamps = opts.ts_at != 0;
    let Some(segment) = segment(
        &packet.dst,
        &packet.src,
        packet.dst_port,
        packet.src_port,
        cookie as u32,
        packet.tcp_seq.wrapping_add(1),
        TCP_SYN | TCP_ACK,
        0,
    ) else {
        return drop;
    };
    segment.mss = cookie_mss.min(cap).max(536);
    // Without timestamps nothing carries the client's options to its ACK.
    if timestamps {
        segment.ts = Some((encode_ts(opts), opts.tsval));
        if opts.ws != 0xFF {
            segment.ws = EDGE_WS;
        }
        segment.sack_ok = opts.sack_ok;
    }
    let Some(out) = out_buf() else {
        return drop;
    };
    let total = build(out, packet.ipv6, segment);
    if emit(ctx, packet.ipv6, total).is_err() {
        return drop;
    }
    (app, Verdict::SynCookieSent, ctx.reply())
}

/// A client's ACK of no flow whose cookie is good (`isn` its initial
/// sequence number): it opens the flow and becomes the edge's SYN to the
/// origin. A client refused now (its limits, no NAT port, no origin)
/// believes it is connected: it gets a RST, which costs nothing kept.
#[inline(never)]
fn cookie_ack<H: Hook>(
    ctx: &H,
    packet: &Packet,
    index: u32,
    isn: u32,
) -> (u32, Verdict, H::Action) {
    let bad = (index, Verdict::SynCookieBad, H::DROP);
    let Some(app) = apps::app_for(index, packet.proto) else {
        return (index, Verdict::NoListener, H::DROP);
    };
    let Some((tcp, len)) = read_tcp(ctx, packet) else {
        return bad;
    };
    let Some(opts) = options(tcp, len) else {
        return bad;
    };
    let window = u16::from_be_bytes([tcp[14], tcp[15]]);
    if !client::admit(packet, index) {
        return refuse(ctx, packet, index, Verdict::ClientLimited);
    }
    if let Err(verdict) = conntrack::open(packet, index, app, H::HOOK) {
        return refuse(ctx, packet, index, verdict);
    }
    // Another CPU opening the same flow at once: this ACK is dropped, the
    // client's next packet finds that flow.
    let Some((forward, reverse)) = conntrack::opened() else {
        return (index, Verdict::SynProxyPending, H::DROP);
    };
    // SAFETY: both point into NEW_FLOWS, valid for this program run.
    let (forward_ref, reverse_ref) = unsafe { (&mut *forward, &mut *reverse) };
    let timestamps = opts.ts_at != 0;
    let (mss, ws, sack) = if timestamps {
        decode_ts(opts.tsecr)
    } else if packet.ipv6 {
        (MSS_NO_TS_V6, 0xFF, false)
    } else {
        (MSS_NO_TS_V4, 0xFF, false)
    };
    let mut syn_opts = 0;
    if timestamps {
        syn_opts |= SYN_OPT_TIMESTAMPS;
    }
    if sack {
        syn_opts |= SYN_OPT_SACK;
    }
    if ws != 0xFF {
        syn_opts |= SYN_OPT_WSCALE;
    }
    let edge_ws = if ws != 0xFF { EDGE_WS } else { 0 };
    let state = FLOW_SYN_PROXY | FLOW_ORIGIN_PENDING;
    forward_ref.state = state;
    // The client's next sequence number, tracked as any flow's; the SYN
    // the edge sends (again) is built from it.
    forward_ref.seq = isn.wrapping_add(1);
    forward_ref.seq_adj = isn;
    forward_ref.ts_adj = opts.tsval;
    forward_ref.syn_mss = mss;
    forward_ref.syn_opts = syn_opts;
    forward_ref.client_ws = if ws == 0xFF { 0 } else { ws };
    forward_ref.client_win = window;
    forward_ref.edge_ws = edge_ws;
    reverse_ref.state = state;
    reverse_ref.seq_adj = packet.tcp_ack.wrapping_sub(1);
    reverse_ref.ts_adj = opts.tsecr;
    reverse_ref.syn_opts = syn_opts;
    reverse_ref.client_ws = forward_ref.client_ws;
    reverse_ref.edge_ws = edge_ws;
    send_origin_syn(ctx, packet, forward, Verdict::ToOrigin)
}

/// A RST in place of the packet, back to where it came from with the
/// sequence number its sender acknowledged: to a client refused after a
/// good cookie, or to an origin answering the edge's SYN with an ACK of
/// another connection (a stale one on the NAT tuple; RFC 9293 3.10.7.3).
#[inline(never)]
fn reset_sender<H: Hook>(ctx: &H, packet: &Packet) -> Result<(), Verdict> {
    let segment = segment(
        &packet.dst,
        &packet.src,
        packet.dst_port,
        packet.src_port,
        packet.tcp_ack,
        0,
        TCP_RST,
        0,
    )
    .ok_or(Verdict::Malformed)?;
    let out = out_buf().ok_or(Verdict::Malformed)?;
    let total = build(out, packet.ipv6, segment);
    emit(ctx, packet.ipv6, total)
}

/// Refuses a client whose cookie was good (`verdict` says why): a RST.
#[inline(never)]
fn refuse<H: Hook>(
    ctx: &H,
    packet: &Packet,
    index: u32,
    verdict: Verdict,
) -> (u32, Verdict, H::Action) {
    if reset_sender(ctx, packet).is_err() {
        return (index, verdict, H::DROP);
    }
    (index, verdict, ctx.reply())
}

/// The edge's SYN to the origin, in place of the client's packet, from
/// what the to-origin half keeps.
#[inline(never)]
fn send_origin_syn<H: Hook>(
    ctx: &H,
    packet: &Packet,
    forward: *mut FlowValue,
    verdict: Verdict,
) -> (u32, Verdict, H::Action) {
    // SAFETY: a flow map entry, valid for this program run.
    let flow = unsafe { &*forward };
    let drop = (flow.app, Verdict::Malformed, H::DROP);
    let opts = flow.syn_opts;
    let ws_shift = if opts & SYN_OPT_WSCALE != 0 {
        flow.client_ws
    } else {
        0
    };
    let window = ((flow.client_win as u32) << ws_shift).min(65535) as u16;
    let Some(segment) = segment(
        &flow.new_src,
        &flow.new_dst,
        flow.new_src_port,
        flow.new_dst_port,
        // The ISN from the tracked next sequence number, which nothing
        // rewrites while pending (`seq_adj` changes once the origin
        // answers, maybe on another CPU while this runs).
        flow.seq.wrapping_sub(1),
        0,
        TCP_SYN,
        window,
    ) else {
        return drop;
    };
    segment.mss = flow.syn_mss;
    if opts & SYN_OPT_TIMESTAMPS != 0 {
        segment.ts = Some((flow.ts_adj, 0));
    }
    if opts & SYN_OPT_WSCALE != 0 {
        segment.ws = flow.client_ws;
    }
    segment.sack_ok = opts & SYN_OPT_SACK != 0;
    let Some(out) = out_buf() else {
        return drop;
    };
    let total = build(out, packet.ipv6, segment);
    if emit(ctx, packet.ipv6, total).is_err() {
        return drop;
    }
    let (action, failed) = forward::send_built(ctx, packet, forward, total);
    (flow.app, failed.unwrap_or(verdict), action)
}

/// A packet of a SYN-proxied flow.
#[inline(never)]
fn flow_packet<H: Hook>(ctx: &H, packet: &Packet) -> (u32, Verdict, H::Action) {
    let Some(tracked) = conntrack::lookup(packet) else {
        return (0, Verdict::NoFlow, H::DROP);
    };
    let entry_ptr = tracked.entry;
    // SAFETY: a flow map entry, valid for this program run.
    let entry = unsafe { &mut *entry_ptr };
    let app = entry.app;
    let flags = packet.tcp_flags;
    let to_origin = entry.direction == DIR_TO_ORIGIN;
    if entry.state & FLOW_ORIGIN_PENDING != 0 {
        if to_origin {
            if flags & TCP_RST != 0 {
                entry.state |= FLOW_RST;
                return (app, Verdict::SynProxyPending, H::DROP);
            }
            return send_origin_syn(ctx, packet, entry_ptr, Verdict::SynProxyPending);
        }
        return origin_pending(ctx, packet, entry_ptr);
    }
    if flags & TCP_SYN != 0 {
        if !to_origin && flags & TCP_ACK != 0 {
            // The origin's SYN-ACK again: the edge's ACK was lost.
            return origin_synack(ctx, packet, entry_ptr, false);
        }
        if to_origin && flags & (TCP_ACK | TCP_RST | TCP_FIN) == 0 && closing(entry, packet) {
            // A new connection on a closing tuple: a cookie of its own.
            // The old flow stays until that cookie comes back (a blind
            // FIN, FIN, SYN cannot end a live flow); the mark says to look
            // for it.
            entry.state |= FLOW_HANDSHAKE;
            return syn(ctx, packet, app);
        }
        return (app, Verdict::StraySyn, H::DROP);
    }
    carry(ctx, packet, tracked)
}

/// Whether a flow is closing: a RST either way, or a FIN both ways.
#[inline(never)]
fn closing(entry: &FlowValue, packet: &Packet) -> bool {
    let Some(peer) = conntrack::peer(entry, packet) else {
        return true;
    };
    (entry.state | peer.state) & FLOW_RST != 0 || (entry.state & peer.state) & FLOW_FIN != 0
}

/// The client's ACK of a new cookie on a closing tuple (marked
/// `FLOW_HANDSHAKE` when its SYN got the cookie): the old flow ends,
/// counted expired, and (app, the new ISN) is returned for the new one.
#[inline(never)]
fn reopened<H: Hook>(ctx: &H, packet: &Packet) -> Option<(u32, u32)> {
    if packet.tcp_flags & (TCP_SYN | TCP_RST | TCP_FIN | TCP_ACK) != TCP_ACK {
        return None;
    }
    let tracked = conntrack::lookup(packet)?;
    // SAFETY: a flow map entry, valid for this program run.
    let entry = unsafe { &*tracked.entry };
    if entry.direction != DIR_TO_ORIGIN
        || entry.state & FLOW_HANDSHAKE == 0
        || entry.state & FLOW_ORIGIN_PENDING != 0
        || !closing(entry, packet)
    {
        return None;
    }
    let isn = check_cookie(ctx, packet)?;
    let (index, hook) = (entry.app, entry.hook);
    crate::stats::count(index, Verdict::flow_expired(hook), 0);
    conntrack::remove_flow(packet, Some(entry));
    Some((index, isn))
}

/// A packet from the origin while the edge's SYN waits for its answer.
#[inline(never)]
fn origin_pending<H: Hook>(
    ctx: &H,
    packet: &Packet,
    entry_ptr: *mut FlowValue,
) -> (u32, Verdict, H::Action) {
    // SAFETY: a flow map entry, valid for this program run.
    let reverse = unsafe { &*entry_ptr };
    let app = reverse.app;
    let flags = packet.tcp_flags;
    let Some(forward) = conntrack::peer(reverse, packet) else {
        return (app, Verdict::NoFlow, H::DROP);
    };
    // What answers the edge's SYN acknowledges its ISN + 1.
    let answers = flags & TCP_ACK != 0 && packet.tcp_ack == forward.seq;
    if flags & TCP_RST != 0 {
        if answers {
            return origin_refused(ctx, packet, entry_ptr);
        }
        return (app, Verdict::RstInvalid, H::DROP);
    }
    if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
        if !answers {
            return (app, Verdict::StraySyn, H::DROP);
        }
        return origin_synack(ctx, packet, entry_ptr, true);
    }
    if flags & (TCP_SYN | TCP_ACK) == TCP_ACK && !answers {
        // A stale connection of the origin's on the NAT tuple: reset it;
        // the client's next probe brings the SYN again.
        if reset_sender(ctx, packet).is_ok() {
            let forward_ptr = forward as *mut FlowValue;
            let total = if packet.ipv6 { 40 } else { 20 } + ACK_TCP_LEN;
            let (action, failed) = forward::send_built(ctx, packet, forward_ptr, total);
            return (app, failed.unwrap_or(Verdict::SynProxyPending), action);
        }
    }
    (app, Verdict::StraySyn, H::DROP)
}

/// A packet of an established SYN-proxied flow: the flow's checks, the
/// translation, the NAT.
#[inline(never)]
fn carry<H: Hook>(
    ctx: &H,
    packet: &Packet,
    tracked: conntrack::Tracked,
) -> (u32, Verdict, H::Action) {
    // SAFETY: a flow map entry, valid for this program run.
    let app = unsafe { (*tracked.entry).app };
    match conntrack::touch(tracked, packet) {
        Seen::Send(entry) => {
            if translate(ctx, packet, entry).is_err() {
                // Untranslated, the stack would answer with a RST.
                return (app, Verdict::Malformed, H::DROP);
            }
            path::rewrite_and_send(ctx, packet, entry)
        }
        Seen::Drop(verdict) => (app, verdict, H::DROP),
        // The other half is gone: as a packet of no flow, dropped (an
        // ACK of no flow carries no cookie).
        Seen::Gone => (app, Verdict::NoFlow, H::DROP),
    }
}

/// The origin refused the edge's SYN: the client gets a RST (its
/// sequence number the one the client expects: cookie + 1), and the flow
/// goes.
#[inline(never)]
fn origin_refused<H: Hook>(
    ctx: &H,
    packet: &Packet,
    entry_ptr: *mut FlowValue,
) -> (u32, Verdict, H::Action) {
    // SAFETY: a flow map entry, valid for this program run.
    let entry = unsafe { &mut *entry_ptr };
    let app = entry.app;
    let seq = entry.seq_adj.wrapping_add(1);
    let seq_at = packet.l4_offset + 4;
    let flags_at = packet.l4_offset + 12;
    let check_at = packet.l4_offset + 16;
    let old_seq = packet.tcp_seq.to_be_bytes();
    // RST alone (no ACK): a RST answering a SYN-ACK'd connection needs
    // only the sequence number.
    let Ok(word) = ptr_at::<[u8; 2]>(ctx, flags_at) else {
        return (app, Verdict::Malformed, H::DROP);
    };
    let old_flags = unsafe { *word };
    let new_flags = [old_flags[0], TCP_RST];
    if ctx
        .replace4(check_at, seq_at, old_seq, seq.to_be_bytes())
        .is_err()
        || ctx
            .replace2(check_at, flags_at, old_flags, new_flags)
            .is_err()
    {
        return (app, Verdict::Malformed, H::DROP);
    }
    let (_, verdict, action) = path::rewrite_and_send(ctx, packet, entry_ptr);
    // Removed once sent: the entry's values were read by then.
    conntrack::remove_flow(packet, Some(entry));
    let verdict = match verdict {
        Verdict::ToClient => Verdict::SynProxyOriginFailed,
        other => other,
    };
    (app, verdict, action)
}

/// The origin's SYN-ACK: the edge ACKs it (a clone, at TC), the flow
/// becomes established with its offsets, and the client gets a window
/// update in the SYN-ACK's place. XDP, which cannot send two packets
/// for one, hands it up to TC.
#[inline(never)]
fn origin_synack<H: Hook>(
    ctx: &H,
    packet: &Packet,
    entry_ptr: *mut FlowValue,
    pending: bool,
) -> (u32, Verdict, H::Action) {
    // SAFETY: a flow map entry, valid for this program run.
    let reverse = unsafe { &mut *entry_ptr };
    let app = reverse.app;
    if H::FIRST {
        return (app, Verdict::ToTc, H::PASS);
    }
    let drop = (app, Verdict::Malformed, H::DROP);
    let Some(forward) = conntrack::peer(reverse, packet) else {
        return (app, Verdict::NoFlow, H::DROP);
    };
    let Some((tcp, len)) = read_tcp(ctx, packet) else {
        return drop;
    };
    let Some(opts) = options(tcp, len) else {
        return drop;
    };
    let origin_isn = packet.tcp_seq;
    let syn_window = u16::from_be_bytes([tcp[14], tcp[15]]);
    if pending {
        // Only the answer to the edge's SYN (its ISN + 1).
        if packet.tcp_ack != forward.seq_adj.wrapping_add(1) {
            return (app, Verdict::StraySyn, H::DROP);
        }
        let cookie = reverse.seq_adj;
        let edge_ts = reverse.ts_adj;
        let client_isn = forward.seq.wrapping_sub(1);
        let client_ts = forward.ts_adj;
        let seq_adj = cookie.wrapping_sub(origin_isn);
        let timestamps = forward.syn_opts & SYN_OPT_TIMESTAMPS != 0 && opts.ts_at != 0;
        let ts_adj = if timestamps {
            edge_ts.wrapping_sub(opts.tsval)
        } else {
            0
        };
        let client_scales = forward.syn_opts & SYN_OPT_WSCALE != 0;
        let origin_ws = if client_scales && opts.ws != 0xFF {
            opts.ws
        } else {
            0
        };
        let declined = if client_scales && opts.ws == 0xFF {
            SYN_OPT_ORIGIN_NO_WS
        } else {
            0
        };
        // The origin's ISN is its tracked sequence number (RSTs are judged
        // by it); a RST seen while pending says nothing of the connection
        // now up.
        reverse.seq = origin_isn;
        for half in [&mut *forward, &mut *reverse] {
            half.state &= !(FLOW_ORIGIN_PENDING | FLOW_RST);
            half.seq_adj = seq_adj;
            half.ts_adj = ts_adj;
            half.origin_ws = origin_ws;
            half.syn_opts |= declined;
        }
        // The ACK to the origin first (a clone), then this packet becomes
        // the client's window update.
        let Some(ack) = segment(
            &packet.dst,
            &packet.src,
            packet.dst_port,
            packet.src_port,
            client_isn.wrapping_add(1),
            origin_isn.wrapping_add(1),
            TCP_ACK,
            client_window_for_origin(forward, forward.client_win),
        ) else {
            return drop;
        };
        if timestamps {
            ack.ts = Some((client_ts, opts.tsval));
        }
        let Some(out) = out_buf() else {
            return drop;
        };
        let total = build(out, packet.ipv6, ack);
        if emit(ctx, packet.ipv6, total).is_err() {
            return drop;
        }
        clone_to_origin(ctx, packet, forward);
        let edge_ws = reverse.edge_ws;
        let Some(update) = segment(
            &reverse.new_src,
            &reverse.new_dst,
            reverse.new_src_port,
            reverse.new_dst_port,
            cookie.wrapping_add(1),
            client_isn.wrapping_add(1),
            TCP_ACK,
            (syn_window >> edge_ws).max(1),
        ) else {
            return drop;
        };
        if timestamps {
            update.ts = Some((edge_ts, client_ts));
        }
        let total = build(out, packet.ipv6, update);
        if emit(ctx, packet.ipv6, total).is_err() {
            return drop;
        }
        // The packet now travels as the to-client half says, already
        // rewritten: send it as it is.
        let established = conntrack::establish(entry_ptr, packet);
        crate::stats::count(app, Verdict::SynProxyOpened, 0);
        let (action, failed) =
            forward::send_built(ctx, packet, established.unwrap_or(entry_ptr), total);
        return (app, failed.unwrap_or(Verdict::ToClient), action);
    }
    // A retransmitted SYN-ACK: the edge's ACK again, to the origin. The
    // SYN-ACK acknowledges the client's next sequence number as the origin
    // knows it, and echoes the client's TSval in its TSecr. Only the
    // origin's own (its ISN), not any SYN-ACK on the tuple.
    if origin_isn != reverse.seq {
        return (app, Verdict::StraySyn, H::DROP);
    }
    let Some(ack) = segment(
        &packet.dst,
        &packet.src,
        packet.dst_port,
        packet.src_port,
        packet.tcp_ack,
        origin_isn.wrapping_add(1),
        TCP_ACK,
        client_window_for_origin(forward, forward.client_win),
    ) else {
        return drop;
    };
    if opts.ts_at != 0 {
        ack.ts = Some((opts.tsecr, opts.tsval));
    }
    let Some(out) = out_buf() else {
        return drop;
    };
    let total = build(out, packet.ipv6, ack);
    if emit(ctx, packet.ipv6, total).is_err() {
        return drop;
    }
    let forward_ptr = forward as *mut FlowValue;
    let (action, failed) = forward::send_built(ctx, packet, forward_ptr, total);
    (app, failed.unwrap_or(Verdict::ToOrigin), action)
}

/// A client window field as the origin reads it: the same, unless the
/// origin declined window scaling the client was told the edge does.
#[inline(always)]
fn client_window_for_origin(forward: &FlowValue, window: u16) -> u16 {
    if forward.syn_opts & SYN_OPT_ORIGIN_NO_WS == 0 {
        return window;
    }
    ((window as u32) << (forward.client_ws & 15)).min(65535) as u16
}

/// Sends a copy of the packet (the edge's ACK, built in place) to the
/// origin: TC's clone, with the next hop from a route lookup. Best
/// effort: when it cannot go, the origin sends its SYN-ACK again. Not
/// inlined: its route lookup's parameters take a stack frame of their own.
#[inline(never)]
fn clone_to_origin<H: Hook>(ctx: &H, packet: &Packet, forward: &FlowValue) {
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    let leaving = Leaving::flow(forward, 0);
    let rc = forward::route(&mut params, ctx, ctx.ingress(), packet, &leaving);
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return;
    }
    ctx.clone_out(params.ifindex, &params.dmac, &params.smac);
}

/// Translates an established SYN-proxied packet's numbers between the
/// client's and the origin's handshakes, checksum included. The NAT
/// rewrite comes after.
#[inline(never)]
fn translate<H: Hook>(ctx: &H, packet: &Packet, entry: *mut FlowValue) -> Result<(), Verdict> {
    // SAFETY: a flow map entry, valid for this program run.
    let flow = unsafe { &*entry };
    let (tcp, len) = read_tcp(ctx, packet).ok_or(Verdict::Malformed)?;
    let l4 = packet.l4_offset;
    let check = l4 + 16;
    let adj = flow.seq_adj;
    let opts = options(tcp, len).ok_or(Verdict::Malformed)?;
    // Offsets read back from the map: bounded again for the verifier.
    let (sack_at, sack_len, ts_at) = (opts.sack_at & 63, opts.sack_len & 63, opts.ts_at & 63);
    if flow.direction == DIR_TO_ORIGIN {
        if packet.tcp_flags & TCP_ACK != 0 {
            let ack = get4(tcp, 8);
            ctx.replace4(
                check,
                l4 + 8,
                ack.to_be_bytes(),
                ack.wrapping_sub(adj).to_be_bytes(),
            )?;
        }
        if sack_at != 0 {
            let mut i = 0;
            while i < 8 {
                let at = sack_at + 2 + i * 4;
                if at + 4 > sack_at + sack_len {
                    break;
                }
                let edge = get4(tcp, at);
                ctx.replace4(
                    check,
                    l4 + at,
                    edge.to_be_bytes(),
                    edge.wrapping_sub(adj).to_be_bytes(),
                )?;
                i += 1;
            }
        }
        if ts_at != 0 && flow.ts_adj != 0 && opts.tsecr != 0 {
            let at = ts_at + 6;
            let new = opts.tsecr.wrapping_sub(flow.ts_adj);
            ctx.replace4(check, l4 + at, opts.tsecr.to_be_bytes(), new.to_be_bytes())?;
        }
        if flow.syn_opts & SYN_OPT_ORIGIN_NO_WS != 0 {
            let old = [tcp[14], tcp[15]];
            let window = client_window_for_origin(flow, u16::from_be_bytes(old));
            ctx.replace2(check, l4 + 14, old, window.to_be_bytes())?;
        }
    } else {
        let seq = get4(tcp, 4);
        ctx.replace4(
            check,
            l4 + 4,
            seq.to_be_bytes(),
            seq.wrapping_add(adj).to_be_bytes(),
        )?;
        if ts_at != 0 && flow.ts_adj != 0 {
            let at = ts_at + 2;
            let new = opts.tsval.wrapping_add(flow.ts_adj);
            ctx.replace4(check, l4 + at, opts.tsval.to_be_bytes(), new.to_be_bytes())?;
        }
        if flow.origin_ws != flow.edge_ws {
            let old = [tcp[14], tcp[15]];
            let window = u16::from_be_bytes(old) as u32;
            let scaled = ((window << (flow.origin_ws & 15)) >> (flow.edge_ws & 15)).min(65535);
            ctx.replace2(check, l4 + 14, old, (scaled as u16).to_be_bytes())?;
        }
    }
    Ok(())
}
