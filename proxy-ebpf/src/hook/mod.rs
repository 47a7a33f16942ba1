//! What the packet path ([`crate::path`]) needs from the hook it runs at,
//! as Cilium's `ctx/xdp.h` and `ctx/skb.h` give it to one `bpf_lxc.c`:
//! packet access, the checksum rewrite, the send, the actions, and the few
//! places where the two hooks take or count packets differently. The path
//! is written once; [`xdp`] and [`tc`] hold what only one hook does.
use aya_ebpf::{EbpfContext, bindings::bpf_fib_lookup as FibParams};
use proxy_common::{FlowValue, Verdict};

use crate::parse::{MAX_HEADER_OFFSET, Packet};

pub mod tc;
pub mod xdp;

/// What a packet comes to: (counter slot, verdict, the hook's action), or
/// None for a packet this hook leaves alone, uncounted.
pub type Outcome<A> = Option<(u32, Verdict, A)>;

/// The bytes of a packet as a hook sees them: the XDP frame, or the
/// linear part of a TC skb. Parsing and header access are the same code
/// for both hooks.
pub trait Frame {
    fn start(&self) -> usize;
    fn end(&self) -> usize;
}

/// Returns a pointer to a `T` at `offset` when the whole `T` is inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &impl Frame, offset: usize) -> Result<*mut T, Verdict> {
    let start = ctx.start();
    let end = ctx.end();
    // Offsets read back from the per-CPU slot are unknown to the verifier:
    // bound them before they touch a packet pointer.
    if offset > MAX_HEADER_OFFSET {
        return Err(Verdict::Malformed);
    }
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Verdict::Malformed);
    }
    Ok((start + offset) as *mut T)
}

/// A field at an odd offset of the segment straddles the checksum's
/// 16-bit words: its bytes count in the other half of each word, so the
/// incremental update takes them swapped within each pair (the frame's
/// TCP header starts at an even offset: Ethernet 14, IP a multiple of 4).
#[inline(always)]
pub fn csum_words4(offset: usize, old: [u8; 4], new: [u8; 4]) -> ([u8; 4], [u8; 4]) {
    if offset & 1 == 0 {
        return (old, new);
    }
    (
        [old[1], old[0], old[3], old[2]],
        [new[1], new[0], new[3], new[2]],
    )
}

/// [`csum_words4`] for 2 bytes.
#[inline(always)]
pub fn csum_words2(offset: usize, old: [u8; 2], new: [u8; 2]) -> ([u8; 2], [u8; 2]) {
    if offset & 1 == 0 {
        return (old, new);
    }
    ([old[1], old[0]], [new[1], new[0]])
}

/// A hook the packet path runs at.
pub trait Hook: Frame + EbpfContext {
    /// The program's return code (`xdp_action`, `TC_ACT_*`).
    type Action: Copy;
    /// On to the kernel's stack (or, from XDP, to TC ingress first).
    const PASS: Self::Action;
    /// Dropped: blocked by the access rules, or no NAT port.
    const DROP: Self::Action;
    /// `HOOK_XDP` or `HOOK_TC`: the mark of the flows this hook opens, and
    /// the hook an app's fast path must be at for this one to take it.
    const HOOK: u8;
    /// Counted when this hook opens a flow.
    const OPENED: Verdict;
    /// Every frame meets this hook first (XDP): it applies the access rules
    /// and counts every packet it passes. The other (TC ingress) counts
    /// only what is its own: what it passes otherwise, XDP counted.
    const FIRST: bool;

    /// Bytes counted for the packet.
    fn frame_len(&self) -> u64;

    /// The hook's prologue, before parsing: false leaves the packet,
    /// uncounted, to whatever comes after this hook.
    fn takes(&self) -> bool;

    /// Whether the packet came with a VLAN tag: such frames are never
    /// rewritten (the agent has them).
    fn tagged(&self, packet: &Packet) -> bool;

    /// A packet of the other hook's flow or app: Some(outcome) when this
    /// hook hands it on to that hook, None when it is not this hook's to
    /// hand on (a flow: carry on with it; an app: leave it).
    fn hand_on(slot: u32) -> Outcome<Self::Action>;

    /// Rewrites the packet to the flow's tuple and fixes its checksums.
    fn rewrite(&self, packet: &Packet, flow: &FlowValue) -> Result<(), Verdict>;

    /// The interface the packet came in on.
    fn ingress(&self) -> u32;

    /// The IP length the route lookup checks against the egress MTU; 0
    /// leaves the check to the kernel.
    fn route_len(packet: &Packet) -> u16;

    /// The action for a packet whose next hop's MAC is not known yet; the
    /// route lookup left the next hop in `params`.
    fn neighbor_pending(params: &FibParams) -> Self::Action;

    /// New MACs, then out of `ifindex`; with the verdict that says why when
    /// the packet did not leave that way.
    fn redirect(
        &self,
        ifindex: u32,
        dmac: &[u8; 6],
        smac: &[u8; 6],
    ) -> (Self::Action, Option<Verdict>);

    /// Tail-calls this hook's SYN proxy program ([`crate::synproxy`]);
    /// returns only when it could not.
    fn syn_proxy(&self);

    /// Copies `len` (20 to 60) bytes at `offset` into `dst`.
    fn load(&self, offset: usize, dst: &mut [u8; 64], len: u32) -> Result<(), Verdict>;

    /// Makes the packet `len` bytes long (from the Ethernet header on).
    fn set_len(&self, len: u32) -> Result<(), Verdict>;

    /// Writes `bytes` at `offset` (a header the SYN proxy built, its
    /// checksums included).
    fn put<const N: usize>(&self, offset: usize, bytes: &[u8; N]) -> Result<(), Verdict>;

    /// Replaces 4 bytes of the TCP segment at `offset`, and the TCP
    /// checksum at `check` with them.
    fn replace4(
        &self,
        check: usize,
        offset: usize,
        old: [u8; 4],
        new: [u8; 4],
    ) -> Result<(), Verdict>;

    /// [`Hook::replace4`] for 2 bytes.
    fn replace2(
        &self,
        check: usize,
        offset: usize,
        old: [u8; 2],
        new: [u8; 2],
    ) -> Result<(), Verdict>;

    /// Back out of the interface it came in on, its MACs swapped.
    fn reply(&self) -> Self::Action;

    /// A copy out of `ifindex` with these MACs, the packet itself left to
    /// go on (TC); nothing where the hook cannot copy (XDP).
    fn clone_out(&self, ifindex: u32, dmac: &[u8; 6], smac: &[u8; 6]);
}
