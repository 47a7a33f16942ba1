//! The packet path, one for both hooks ([`crate::hook`]): XDP runs it on
//! every frame first, TC ingress on what XDP passed up.
//!
//! prologue (XDP: a protocol TC has alone? up to TC, uncounted;
//!           TC: a VLAN-tagged skb? left alone)
//! parse -> tracked flow? rewrite + send (XDP: a TC flow goes up, `to_tc`;
//!          a blind RST or an origin's SYN: drop)
//!       -> listener (none, on an edge pool address: drop, `unlisted`)
//!       -> app -> access rules (XDP, if ip_firewall): blocked? drop
//!                          -> no fast path, or tagged? to the agent
//!                          -> the other hook's app? XDP: up to TC; TC: left
//!                          -> client over its limits? drop
//!                          -> open flow (TCP: SYN only), rewrite + send
//!
//! Every packet ends with a [`Verdict`] counted per app (or in the global
//! row), so operators see why each packet went where it went; XDP counts
//! every packet it does not leave to TC, and TC counts what is its own (a
//! protocol it has alone, its apps, and the flows it rewrites).
use aya_log_ebpf::warn;
use proxy_common::{
    AppFlags, DIR_TO_ORIGIN, FLOW_SYN_PROXY, FlowValue, GLOBAL_SLOT, HOOK_TC, HOOK_XDP, TCP_ACK,
    TCP_FIN, TCP_RST, TCP_SYN, Verdict, ip_proto,
};

use crate::{
    apps, client,
    conntrack::{self, Seen},
    forward,
    hook::{Hook, Outcome},
    listener,
    parse::{self, Packet},
    pools, rules, stats,
    synproxy::{self, HAND_ACK, HAND_FLOW, HAND_SYN},
};

/// The program: the packet's outcome counted, and the hook's action.
#[inline(always)]
pub fn run<H: Hook>(ctx: &H) -> H::Action {
    let frame_len = ctx.frame_len();
    match handle(ctx) {
        Some((slot, verdict, action)) => {
            stats::count(slot, verdict, frame_len);
            action
        }
        None => H::PASS,
    }
}

/// Decides what to do with a packet.
#[inline(always)]
fn handle<H: Hook>(ctx: &H) -> Outcome<H::Action> {
    let pass = H::PASS;
    if !ctx.takes() {
        return None;
    }
    let packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(verdict) => return H::FIRST.then_some((GLOBAL_SLOT, verdict, pass)),
    };
    let tagged = ctx.tagged(packet);
    if !tagged && let Some(flow) = conntrack::lookup(packet) {
        // SAFETY: a flow map entry.
        let (hook, app, state) =
            unsafe { ((*flow.entry).hook, (*flow.entry).app, (*flow.entry).state) };
        let other = if H::HOOK == HOOK_XDP {
            HOOK_TC
        } else {
            HOOK_XDP
        };
        if hook == other
            && let Some(outcome) = H::hand_on(app)
        {
            return Some(outcome);
        }
        if state & FLOW_SYN_PROXY != 0 {
            // Its numbers are translated: only the SYN proxy carries it.
            synproxy::hand(ctx, HAND_FLOW, app);
            return Some((app, Verdict::Malformed, H::DROP));
        }
        match conntrack::touch(flow, packet) {
            Seen::Send(entry) => return Some(rewrite_and_send(ctx, packet, entry)),
            Seen::Drop(verdict) => return Some((app, verdict, H::DROP)),
            // Its other half is gone or another flow's: this one is gone,
            // and the packet is new (a SYN opens a fresh flow).
            Seen::Gone => {}
        }
    }
    // XDP's prologue passed every untagged frame of a protocol TC has
    // alone, and a tagged one is not TC's: only TC needs to know.
    let alone = !H::FIRST && apps::tc_only(packet.proto);
    let counted = H::FIRST || alone;
    let Some(index) = listener::lookup(packet) else {
        // An edge address no app serves on this port: no RST or ICMP error
        // from the stack (`edge.unlisted`). The hook that counts the
        // packet decides, so XDP drops it, or TC for a protocol it has
        // alone; TC for every protocol when XDP is not attached.
        if (counted || (!H::FIRST && apps::unlisted_at_tc())) && pools::unlisted(packet) {
            return Some((GLOBAL_SLOT, Verdict::Unlisted, H::DROP));
        }
        return counted.then_some((GLOBAL_SLOT, Verdict::NoListener, pass));
    };
    let Some(app) = apps::app_for(index, packet.proto) else {
        if !H::FIRST {
            return None;
        }
        // Rare: only while the agent rewrites the maps, or on an agent bug.
        warn!(
            ctx,
            "listener points at app slot {} with no such app", index
        );
        return Some((GLOBAL_SLOT, Verdict::NoListener, pass));
    };
    // Before any flow or socket exists. A flow opened earlier is cut by
    // the agent when a new rule set blocks its client.
    if H::FIRST
        && app.flags.contains(AppFlags::IP_FIREWALL)
        && let Some(verdict) = rules::check(packet, index)
    {
        return Some((index, verdict, H::DROP));
    }
    if !app.flags.contains(AppFlags::FAST_PATH) || tagged {
        return counted.then_some((index, Verdict::ToAgent, pass));
    }
    let app_hook = if app.flags.contains(AppFlags::TC) || alone {
        HOOK_TC
    } else {
        HOOK_XDP
    };
    if app_hook != H::HOOK {
        return H::hand_on(index);
    }
    if packet.proto == ip_proto::TCP && app.flags.contains(AppFlags::SYN_PROXY) {
        // Its own program answers SYNs and checks the cookies of ACKs;
        // back here only when the agent left it out (then as without).
        let flags = packet.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN);
        if flags == TCP_SYN {
            synproxy::hand(ctx, HAND_SYN, index);
        } else if flags == TCP_ACK {
            synproxy::hand(ctx, HAND_ACK, index);
        } else if flags & TCP_SYN != 0 {
            // SYN with FIN or RST: no handshake starts that way, and the
            // NAT below would open a flow for it.
            return Some((index, Verdict::StraySyn, H::DROP));
        }
    }
    if packet.proto == ip_proto::TCP && !packet.is_tcp_open() {
        return Some((index, Verdict::NoFlow, pass));
    }
    if !client::admit(packet, index) {
        return Some((index, Verdict::ClientLimited, H::DROP));
    }
    // Counted `flow_opened` when it becomes established (conntrack).
    Some(match conntrack::open(packet, index, app, H::HOOK) {
        Ok(flow) => rewrite_and_send(ctx, packet, flow),
        // No NAT port, no way on.
        Err(Verdict::NatFailed) => (index, Verdict::NatFailed, H::DROP),
        Err(verdict) => (index, verdict, pass),
    })
}

#[inline(always)]
pub(crate) fn rewrite_and_send<H: Hook>(
    ctx: &H,
    packet: &Packet,
    flow: *mut FlowValue,
) -> (u32, Verdict, H::Action) {
    // SAFETY: a flow map entry or this CPU's scratch slot.
    let (app, direction) = unsafe { ((*flow).app, (*flow).direction) };
    // A failed rewrite: the stack may have the packet (see each hook's).
    if let Err(verdict) = ctx.rewrite(packet, unsafe { &*flow }) {
        return (app, verdict, H::PASS);
    }
    let delivered = if direction == DIR_TO_ORIGIN {
        Verdict::ToOrigin
    } else {
        Verdict::ToClient
    };
    let (action, verdict) = forward::send(ctx, packet, flow);
    (app, verdict.unwrap_or(delivered), action)
}
