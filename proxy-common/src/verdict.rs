//! Why a packet or connection went where it went: one numbered table, as
//! Cilium keeps its drop reasons in `bpf/lib/drop_reasons.h`. A code is a
//! column of every `STATS` row and a metric label, so rows are appended,
//! never renumbered or reused; the table's macro builds the enum, `ALL`,
//! `COUNT` and `name()` from the rows, so they cannot disagree.

use crate::flow::HOOK_TC;
use crate::rule::{RULE_KIND_ASN, RULE_KIND_IP, RULE_KIND_RANGE};

/// The verdict table: each row is `/// doc`, `Variant = code => "name",`.
/// Codes must run 0, 1, 2, ... in row order (checked at compile time).
macro_rules! verdict_table {
    (
        $(#[$meta:meta])*
        pub enum $verdict:ident {
            $( $(#[$row_meta:meta])* $variant:ident = $code:literal => $name:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $verdict {
            $( $(#[$row_meta])* $variant = $code, )*
        }

        impl $verdict {
            /// Number of verdicts: the width of a `STATS` row.
            pub const COUNT: u32 = [$($code),*].len() as u32;

            /// Every verdict, in code order (`ALL[v as usize] == v`).
            pub const ALL: [$verdict; Self::COUNT as usize] = [$($verdict::$variant),*];

            /// Stable name for logs, metrics and the `stats` command.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $verdict::$variant => $name, )*
                }
            }
        }
    };
}

verdict_table! {
    /// Why the XDP program did what it did with a packet. Kernel and agent share
    /// these codes, so counters and logs name the reason.
    pub enum Verdict {
        /// TCP/UDP packet to no configured (protocol, address, port): passed.
        NoListener = 0 => "no_listener",
        /// Not IPv4 or IPv6 (ARP, LLDP, ...): passed.
        NotIp = 1 => "not_ip",
        /// A header was cut short or invalid: passed to the stack, which drops it.
        Malformed = 2 => "malformed",
        /// An IPv4 fragment, or an IPv6 packet whose first next header is the
        /// fragment header: passed (fragments carry no complete L4 header).
        Fragment = 3 => "fragment",
        /// IP, but neither TCP nor UDP (ICMP other than an error, or an IPv6
        /// extension header other than a fragment header): passed.
        OtherProtocol = 4 => "other_protocol",
        /// Matched an application and handed to the edge's stack (agent).
        ToAgent = 5 => "to_agent",
        /// Fast path: rewritten toward the origin and redirected.
        ToOrigin = 6 => "to_origin",
        /// Fast path: an origin's reply rewritten toward the client and redirected.
        ToClient = 7 => "to_client",
        /// Fast path rewrite done, but the next hop's MAC is not known yet: the
        /// packet goes through the kernel's forwarding path, which resolves it.
        NeighborPending = 8 => "neighbor_pending",
        /// Counted once per new flow (not per packet) opened in XDP.
        FlowOpened = 9 => "flow_opened",
        /// Counted by the agent when it removes an idle or closed flow that
        /// XDP opened.
        FlowExpired = 10 => "flow_expired",
        /// No free NAT source port or flow entry: dropped.
        NatFailed = 11 => "nat_failed",
        /// Fast-path app, but no origin of the client's address family (or not
        /// resolved yet): passed to the kernel's stack, which has no socket
        /// for it.
        NoOrigin = 12 => "no_origin",
        /// Fast-path TCP app, not a SYN and no flow: handed to the stack (which
        /// answers with a reset).
        NoFlow = 13 => "no_flow",
        /// Rewritten, but the route lookup found no way out the program can
        /// take (no route, blackhole, a local destination, forwarding off, an
        /// egress interface not in `TX_PORTS`): passed to the kernel, which
        /// sends or drops it.
        NoRoute = 14 => "no_route",
        /// An ICMP or ICMPv6 error: passed to the stack, not translated back to
        /// the client.
        IcmpError = 15 => "icmp_error",
        /// Rewritten, but larger than the egress MTU: passed to the kernel,
        /// which fragments what it may; a DF packet is lost (the kernel cannot
        /// tell the client, whose address is gone).
        TooBig = 16 => "too_big",
        /// Dropped: the source matched a block rule on a single IP, and no
        /// allow rule.
        BlockedIp = 17 => "blocked_ip",
        /// Dropped: the source matched a block rule on an IP range.
        BlockedRange = 18 => "blocked_range",
        /// Dropped: the source is in an ASN a block rule names.
        BlockedAsn = 19 => "blocked_asn",
        /// Dropped: the source is in a country a block rule names.
        BlockedCountry = 20 => "blocked_country",
        /// Agent: a connection accepted for the app (bytes: what the client sent
        /// through to the origin, counted when it ends).
        ConnAccepted = 21 => "conn_accepted",
        /// Agent: a connection that ended (bytes: what the origin sent to the
        /// client).
        ConnClosed = 22 => "conn_closed",
        /// Agent: the client's TLS handshake failed or timed out.
        TlsFailed = 23 => "tls_failed",
        /// Agent: the origin could not be reached, refused, timed out, or its
        /// TLS handshake or certificate failed.
        OriginFailed = 24 => "origin_failed",
        /// Agent: closed for idleness (including a client that never spoke).
        ConnTimeout = 25 => "conn_timeout",
        /// Agent: refused at once, over the concurrent connection limit.
        ConnLimited = 26 => "conn_limited",
        /// Agent, UDP: an origin datagram dropped (an SPP reply without a
        /// valid header, or naming another client than its flow's).
        BadReply = 27 => "bad_reply",
        /// XDP passed a packet of a TC-hook app or flow up to TC ingress (after
        /// the access rules), whose NAT counts it again as it sends it on.
        ToTc = 28 => "to_tc",
        /// `FlowOpened` for a flow opened at TC ingress.
        FlowOpenedTc = 29 => "flow_opened_tc",
        /// `FlowExpired` for a flow opened at TC ingress.
        FlowExpiredTc = 30 => "flow_expired_tc",
        /// Fast path: a RST outside the sequence window its flow tracks
        /// (a blind reset): dropped, and the flow's state is left as it was.
        RstInvalid = 31 => "rst_invalid",
        /// Fast path: a SYN from the origin's side of a tracked flow (no
        /// origin opens connections through the NAT): dropped, the flow left
        /// as it was.
        StraySyn = 32 => "stray_syn",
        /// Over a per-client limit (new flows per second or concurrent
        /// flows of the client's prefix): refused before a flow or
        /// connection is opened (kernel: dropped; agent: closed at once).
        ClientLimited = 33 => "client_limited",
        /// A packet to an edge pool address on a port or protocol no app
        /// serves (`edge.unlisted: drop`): dropped, so the edge answers no
        /// scan with a RST or an ICMP error.
        Unlisted = 34 => "unlisted",
        /// SYN proxy: a client's SYN answered by the edge with a SYN-ACK whose
        /// sequence number is a SYN cookie; nothing stored, nothing sent on.
        SynCookieSent = 35 => "syn_cookie_sent",
        /// SYN proxy: an ACK of no flow whose cookie the kernel's check
        /// refuses (spoofed, stale, or for a flow long gone): dropped.
        SynCookieBad = 36 => "syn_cookie_bad",
        /// SYN proxy: the origin answered the edge's SYN; both halves of the
        /// flow are up and its sequence numbers are translated from now on.
        SynProxyOpened = 37 => "syn_proxy_opened",
        /// SYN proxy: the origin refused the edge's SYN (RST; the client gets a
        /// RST) or did not answer it in `tcp_new` (the collector removes it).
        SynProxyOriginFailed = 38 => "syn_proxy_origin_failed",
        /// SYN proxy: a client packet while the origin's handshake is under
        /// way: the edge's SYN to the origin is sent again in its place (the
        /// client's window is still 0, so it carries no data the client has
        /// not kept).
        SynProxyPending = 39 => "syn_proxy_pending",
    }
}

// A row out of order or a skipped code fails the build, not a counter.
const _: () = {
    let mut i = 0;
    while i < Verdict::ALL.len() {
        assert!(
            Verdict::ALL[i] as usize == i,
            "verdict codes must run 0, 1, 2, ... in table order"
        );
        i += 1;
    }
};

impl Verdict {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::HOOK_XDP;
    use crate::rule::RULE_KIND_COUNTRY;
    use std::collections::HashSet;

    #[test]
    fn verdict_table_is_complete_and_ordered() {
        for (i, v) in Verdict::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i, "{}", v.name());
        }
    }

    #[test]
    fn codes_and_names_are_pinned() {
        // Counter slots and metric labels outlive a build: the first, the
        // last and a few between must keep their code and name.
        assert_eq!(Verdict::ALL.len(), Verdict::COUNT as usize);
        for (verdict, code, name) in [
            (Verdict::NoListener, 0, "no_listener"),
            (Verdict::Fragment, 3, "fragment"),
            (Verdict::NoRoute, 14, "no_route"),
            (Verdict::BlockedIp, 17, "blocked_ip"),
            (Verdict::ConnAccepted, 21, "conn_accepted"),
            (Verdict::FlowExpiredTc, 30, "flow_expired_tc"),
        ] {
            assert_eq!((verdict as u32, verdict.name()), (code, name));
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for v in Verdict::ALL {
            let name = v.name();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name} is not snake_case"
            );
        }
    }

    #[test]
    fn flow_expired_and_blocked_pick_by_hook_and_kind() {
        assert_eq!(Verdict::flow_expired(HOOK_XDP), Verdict::FlowExpired);
        assert_eq!(Verdict::flow_expired(HOOK_TC), Verdict::FlowExpiredTc);
        assert_eq!(Verdict::blocked(RULE_KIND_IP), Verdict::BlockedIp);
        assert_eq!(Verdict::blocked(RULE_KIND_RANGE), Verdict::BlockedRange);
        assert_eq!(Verdict::blocked(RULE_KIND_ASN), Verdict::BlockedAsn);
        assert_eq!(Verdict::blocked(RULE_KIND_COUNTRY), Verdict::BlockedCountry);
    }
}
