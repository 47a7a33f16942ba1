//! IP access rules: the zone's allow and block prefixes, checked for apps
//! with `ip_firewall` on, before any flow or socket exists.
//!
//! One LPM trie holds every prefix, tagged with (generation, action,
//! family); `RULE_STATE` says which generation is in force. The agent loads
//! a new rule set beside the old one and switches with one update, so a
//! lookup never sees a half-loaded set. A lookup walks one trie path (at
//! most 160 bits): its cost follows the trie's depth, not the number of
//! rules. An allow match wins over any block match.
//!
//! XDP checks each packet it parses ([`check`]); sk_lookup checks the
//! client of every connection and datagram it steers to the agent
//! ([`check_addr`]), after the kernel's reassembly, so no packet shape
//! XDP passes up unparsed (fragments, IPv6 extension headers) gets past.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray, RingBuf, lpm_trie::Key},
};
use proxy_common::{
    BLOCK_EVENT_GAP_NS, BLOCK_EVENTS_BYTES, BlockEvent, MAX_RULE_PREFIXES, RULE_ALLOW, RULE_BLOCK,
    RuleKey, RuleState, RuleValue, Verdict,
};

use crate::parse::Packet;

#[map]
static RULES: LpmTrie<RuleKey, RuleValue> = LpmTrie::with_max_entries(MAX_RULE_PREFIXES, 0);

#[map]
static RULE_STATE: Array<RuleState> = Array::with_max_entries(1, 0);

/// Sampled block events for the agent's log.
#[map]
static BLOCK_EVENTS: RingBuf = RingBuf::with_byte_size(BLOCK_EVENTS_BYTES, 0);

/// Per CPU: when the last block event was sent.
#[map]
static LAST_EVENT_NS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `Some(verdict)` when the rules drop this packet to `app`.
///
/// Not inlined: the key lives in this function's own stack frame, not in
/// the caller's (the combined stack of the program is 512 bytes).
#[inline(never)]
pub fn check(packet: &Packet, app: u32) -> Option<Verdict> {
    let (rule, verdict) = matching(packet.ipv6, packet.src)?;
    report(packet, app, rule, verdict);
    Some(verdict)
}

/// [`check`] for a connection or datagram sk_lookup steers: `seen` is its
/// block event (client address `src`, `app`, ...) but for `rule` and
/// `verdict`, which this fills in when a rule blocks the client.
#[inline(never)]
pub fn check_addr(ipv6: bool, seen: &BlockEvent) -> Option<Verdict> {
    let (rule, verdict) = matching(ipv6, seen.src)?;
    if may_send()
        && let Some(mut entry) = BLOCK_EVENTS.reserve::<BlockEvent>(0)
    {
        entry.write(BlockEvent {
            rule,
            verdict: verdict as u8,
            ..*seen
        });
        entry.submit(0);
    }
    Some(verdict)
}

/// The body of both checks: the blocking rule's number and verdict.
#[inline(always)]
fn matching(ipv6: bool, src: [u8; 16]) -> Option<(u32, Verdict)> {
    let state = RULE_STATE.get(0)?;
    if state.has_block == 0 {
        return None;
    }
    let mut key = Key::new(
        RuleKey::FULL_LEN,
        RuleKey::new(state.generation, RULE_ALLOW, ipv6, src),
    );
    if state.has_allow != 0 && RULES.get(&key).is_some() {
        return None;
    }
    key.data.action = RULE_BLOCK;
    let rule = RULES.get(&key)?;
    Some((rule.rule, Verdict::blocked(rule.kind)))
}

/// Sends `packet`'s block event (see [`may_send`]). `rule` is `u32::MAX`
/// for a drop no access rule made (`client_limited`).
#[inline(always)]
pub(crate) fn report(packet: &Packet, app: u32, rule: u32, verdict: Verdict) {
    if !may_send() {
        return;
    }
    let Some(mut entry) = BLOCK_EVENTS.reserve::<BlockEvent>(0) else {
        return;
    };
    entry.write(BlockEvent {
        src: packet.src,
        dst: packet.dst,
        src_port: packet.src_port,
        dst_port: packet.dst_port,
        app,
        rule,
        verdict: verdict as u8,
        proto: packet.proto,
        _pad: [0; 2],
    });
    entry.submit(0);
}

/// Whether a block event may go: not when this CPU sent one less than
/// `BLOCK_EVENT_GAP_NS` ago (then the ring's reserve may still fail: the
/// agent is behind).
#[inline(always)]
fn may_send() -> bool {
    let Some(last) = LAST_EVENT_NS.get_ptr_mut(0) else {
        return false;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: this CPU's slot; no other program instance runs on it now.
    unsafe {
        if now.wrapping_sub(*last) < BLOCK_EVENT_GAP_NS {
            return false;
        }
        *last = now;
    }
    true
}
