//! Why a packet or connection went where it went: the codes kernel and
//! agent count and name.

use crate::flow::HOOK_TC;
use crate::rule::{RULE_KIND_ASN, RULE_KIND_IP, RULE_KIND_RANGE};

/// Why the XDP program did what it did with a packet. Kernel and agent share
/// these codes, so counters and logs name the reason.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// TCP/UDP packet to no configured (protocol, address, port): passed.
    NoListener = 0,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): passed.
    NotIp = 1,
    /// A header was cut short or invalid: passed to the stack, which drops it.
    Malformed = 2,
    /// An IPv4 fragment: passed (fragments carry no complete L4 header).
    Fragment = 3,
    /// IP, but neither TCP nor UDP (or an IPv6 extension header): passed.
    OtherProtocol = 4,
    /// Matched an application and handed to the edge's stack (agent).
    ToAgent = 5,
    /// Fast path: rewritten toward the origin and redirected.
    ToOrigin = 6,
    /// Fast path: an origin's reply rewritten toward the client and redirected.
    ToClient = 7,
    /// Fast path rewrite done, but the next hop's MAC is not known yet: the
    /// packet goes through the kernel's forwarding path, which resolves it.
    NeighborPending = 8,
    /// Counted once per new flow (not per packet) opened in XDP.
    FlowOpened = 9,
    /// Counted by the agent when it removes an idle or closed flow that
    /// XDP opened.
    FlowExpired = 10,
    /// No free NAT source port or flow entry: dropped.
    NatFailed = 11,
    /// Fast-path app, but no origin of the client's address family (or not
    /// resolved yet): handed to the agent.
    NoOrigin = 12,
    /// Fast-path TCP app, not a SYN and no flow: handed to the stack (which
    /// answers with a reset).
    NoFlow = 13,
    /// The route lookup failed (no route, blackhole, forwarding off): dropped.
    NoRoute = 14,
    /// An ICMP or ICMPv6 error: passed to the stack, not translated back to
    /// the client.
    IcmpError = 15,
    /// Rewritten, but larger than the egress MTU: passed to the kernel,
    /// which fragments what it may; a DF packet is lost (the kernel cannot
    /// tell the client, whose address is gone).
    TooBig = 16,
    /// Dropped: the source matched a block rule on a single IP, and no
    /// allow rule.
    BlockedIp = 17,
    /// Dropped: the source matched a block rule on an IP range.
    BlockedRange = 18,
    /// Dropped: the source is in an ASN a block rule names.
    BlockedAsn = 19,
    /// Dropped: the source is in a country a block rule names.
    BlockedCountry = 20,
    /// Agent: a connection accepted for the app (bytes: what the client sent
    /// through to the origin, counted when it ends).
    ConnAccepted = 21,
    /// Agent: a connection that ended (bytes: what the origin sent to the
    /// client).
    ConnClosed = 22,
    /// Agent: the client's TLS handshake failed or timed out.
    TlsFailed = 23,
    /// Agent: the origin could not be reached, refused, timed out, or its
    /// TLS handshake or certificate failed.
    OriginFailed = 24,
    /// Agent: closed for idleness (including a client that never spoke).
    ConnTimeout = 25,
    /// Agent: refused at once, over the concurrent connection limit.
    ConnLimited = 26,
    /// Agent, UDP: an origin datagram dropped (an SPP reply without a
    /// valid header, or naming another client than its flow's).
    BadReply = 27,
    /// XDP passed a packet of a TC-hook app or flow up to TC ingress (after
    /// the access rules), whose NAT counts it again as it sends it on.
    ToTc = 28,
    /// `FlowOpened` for a flow opened at TC ingress.
    FlowOpenedTc = 29,
    /// `FlowExpired` for a flow opened at TC ingress.
    FlowExpiredTc = 30,
}

impl Verdict {
    pub const COUNT: u32 = 31;
    pub const ALL: [Verdict; Self::COUNT as usize] = [
        Verdict::NoListener,
        Verdict::NotIp,
        Verdict::Malformed,
        Verdict::Fragment,
        Verdict::OtherProtocol,
        Verdict::ToAgent,
        Verdict::ToOrigin,
        Verdict::ToClient,
        Verdict::NeighborPending,
        Verdict::FlowOpened,
        Verdict::FlowExpired,
        Verdict::NatFailed,
        Verdict::NoOrigin,
        Verdict::NoFlow,
        Verdict::NoRoute,
        Verdict::IcmpError,
        Verdict::TooBig,
        Verdict::BlockedIp,
        Verdict::BlockedRange,
        Verdict::BlockedAsn,
        Verdict::BlockedCountry,
        Verdict::ConnAccepted,
        Verdict::ConnClosed,
        Verdict::TlsFailed,
        Verdict::OriginFailed,
        Verdict::ConnTimeout,
        Verdict::ConnLimited,
        Verdict::BadReply,
        Verdict::ToTc,
        Verdict::FlowOpenedTc,
        Verdict::FlowExpiredTc,
    ];

    /// The verdict counting a flow opened at `hook` that the agent removed.
    #[inline(always)]
    pub const fn flow_expired(hook: u8) -> Verdict {
        if hook == HOOK_TC {
            Verdict::FlowExpiredTc
        } else {
            Verdict::FlowExpired
        }
    }

    /// The verdict of a packet dropped by a block rule of `kind`.
    #[inline(always)]
    pub const fn blocked(kind: u8) -> Verdict {
        match kind {
            RULE_KIND_IP => Verdict::BlockedIp,
            RULE_KIND_RANGE => Verdict::BlockedRange,
            RULE_KIND_ASN => Verdict::BlockedAsn,
            _ => Verdict::BlockedCountry,
        }
    }

    /// Stable name for logs, metrics and the `stats` command.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::NoListener => "no_listener",
            Verdict::NotIp => "not_ip",
            Verdict::Malformed => "malformed",
            Verdict::Fragment => "fragment",
            Verdict::OtherProtocol => "other_protocol",
            Verdict::ToAgent => "to_agent",
            Verdict::ToOrigin => "to_origin",
            Verdict::ToClient => "to_client",
            Verdict::NeighborPending => "neighbor_pending",
            Verdict::FlowOpened => "flow_opened",
            Verdict::FlowExpired => "flow_expired",
            Verdict::NatFailed => "nat_failed",
            Verdict::NoOrigin => "no_origin",
            Verdict::NoFlow => "no_flow",
            Verdict::NoRoute => "no_route",
            Verdict::IcmpError => "icmp_error",
            Verdict::TooBig => "too_big",
            Verdict::BlockedIp => "blocked_ip",
            Verdict::BlockedRange => "blocked_range",
            Verdict::BlockedAsn => "blocked_asn",
            Verdict::BlockedCountry => "blocked_country",
            Verdict::ConnAccepted => "conn_accepted",
            Verdict::ConnClosed => "conn_closed",
            Verdict::TlsFailed => "tls_failed",
            Verdict::OriginFailed => "origin_failed",
            Verdict::ConnTimeout => "conn_timeout",
            Verdict::ConnLimited => "conn_limited",
            Verdict::BadReply => "bad_reply",
            Verdict::ToTc => "to_tc",
            Verdict::FlowOpenedTc => "flow_opened_tc",
            Verdict::FlowExpiredTc => "flow_expired_tc",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_table_is_complete_and_ordered() {
        for (i, v) in Verdict::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i, "{}", v.name());
        }
    }
}
