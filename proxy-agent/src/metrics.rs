//! The agent's counters in OpenMetrics text, for `GET /metrics`. Every
//! per-app family is derived from the counter rows the `stats` command
//! reads (one per app slot and verdict), so the families agree with each
//! other and with [`app_totals`](crate::kernel::stats::app_totals).
//! The families, their labels, what each verdict adds, why every series
//! starts at 0 and what `app="-"` holds: `docs/metrics.md`.

use std::collections::HashMap;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use proxy_common::Verdict;

use crate::config::model::{App, Config};
use crate::dns::DnsAnswers;
use crate::kernel::{conntrack_gc::FlowView, stats::StatsRow};

/// The `app` label of rows that belong to no running app.
pub const RETIRED_APP: &str = "-";

/// The `path` label of fast-path flows opened in XDP ...
pub const PATH_XDP: &str = "xdp";
/// ... and of those opened at TC ingress.
pub const PATH_TC: &str = "tc";
/// The `path` label of the agent's connections and UDP flows.
pub const PATH_AGENT: &str = "agent";

/// What a verdict's counter row adds to the per-app families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// Packets the fast path delivered, with their bytes.
    Forwarded,
    /// Packets handed to the agent: the app's packets, but not its bytes,
    /// which the agent counts per connection (`Opened`/`Closed` of the
    /// agent path), both ways, so that they are not counted twice.
    ToAgent,
    /// A flow (packets) opened on `path`, and, for the agent, the bytes
    /// the client sent.
    Opened(&'static str),
    /// A flow ended on `path`, and, for the agent, the bytes the origin
    /// sent.
    Closed(&'static str),
    /// Refused or lost: a `spectrum_drops_total` reason.
    Drop,
    TlsFailure,
    OriginFailure,
    /// Nothing per app: packets of no app, ordinary ends (idle timeouts
    /// also count as closed), or packets the kernel takes on.
    Other,
}

/// The one place that says what each verdict means for the per-app
/// families (the table in `docs/metrics.md`). The match has no catch-all
/// arm on purpose: a new verdict does not build until it is given a
/// meaning here.
///
/// Drops: the block rules; `nat_failed` (no NAT port, dropped);
/// `no_route` (the fast path could not send it on; a failure, as in
/// `app_totals`); `no_origin` and `no_flow` (a fast-path app's packet left
/// to the edge's stack, which has no socket for it and resets it);
/// `conn_limited` and `client_limited` (refused at once); `bad_reply` (an
/// origin datagram dropped); `rst_invalid` and `stray_syn` (a blind reset
/// or an origin-side SYN, dropped); `syn_cookie_bad` and
/// `syn_proxy_origin_failed` (the SYN proxy's refusals). `unlisted` is no app's: a packet of
/// no app, as `no_listener`. Not drops: `too_big` (the kernel fragments what it may),
/// `conn_timeout` (an ordinary end), the verdicts of packets of no app
/// (`no_listener`, `not_ip`, `malformed`, `fragment`, `other_protocol`,
/// `icmp_error`; a `malformed` in an app's row is a failed rewrite, passed
/// to the stack), and `to_tc` (XDP handing a packet to the TC hook, which
/// counts it again as forwarded). TLS and origin failures have their own
/// families, not a reason here, so nothing is counted twice.
const fn meaning(verdict: Verdict) -> Meaning {
    use Verdict as V;
    match verdict {
        V::ToOrigin | V::ToClient | V::NeighborPending => Meaning::Forwarded,
        V::ToAgent => Meaning::ToAgent,
        V::FlowOpened => Meaning::Opened(PATH_XDP),
        V::FlowExpired => Meaning::Closed(PATH_XDP),
        V::FlowOpenedTc => Meaning::Opened(PATH_TC),
        V::FlowExpiredTc => Meaning::Closed(PATH_TC),
        V::ConnAccepted => Meaning::Opened(PATH_AGENT),
        V::ConnClosed => Meaning::Closed(PATH_AGENT),
        V::BlockedIp
        | V::BlockedRange
        | V::BlockedAsn
        | V::BlockedCountry
        | V::NatFailed
        | V::NoRoute
        | V::NoOrigin
        | V::NoFlow
        | V::ConnLimited
        | V::BadReply
        | V::RstInvalid
        | V::StraySyn
        | V::ClientLimited
        | V::SynCookieBad
        | V::SynProxyOriginFailed => Meaning::Drop,
        V::TlsFailed => Meaning::TlsFailure,
        V::OriginFailed => Meaning::OriginFailure,
        V::NoListener
        | V::NotIp
        | V::Malformed
        | V::Fragment
        | V::OtherProtocol
        | V::IcmpError
        | V::TooBig
        | V::ConnTimeout
        // Packets of no app, in the global row, as `no_listener`.
        | V::Unlisted
        // The TC hook counts the same packet as it forwards it.
        | V::ToTc
        // The SYN proxy's own packets: answered at the edge, or the
        // origin's SYN sent again; a flow it opens counts `flow_opened`.
        | V::SynCookieSent
        | V::SynProxyOpened
        | V::SynProxyPending => Meaning::Other,
    }
}

/// The verdicts counted as `spectrum_drops_total` reasons, in
/// [`Verdict::ALL`] order.
pub fn drop_reasons() -> impl Iterator<Item = Verdict> {
    Verdict::ALL
        .into_iter()
        .filter(|&v| meaning(v) == Meaning::Drop)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NatLabels {
    origin: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
    app_id: String,
}

impl AppLabels {
    fn of(app: Option<&App>) -> Self {
        match app {
            Some(app) => AppLabels {
                app: app.dns.name.clone(),
                app_id: app.id.to_string(),
            },
            None => AppLabels {
                app: RETIRED_APP.to_owned(),
                app_id: String::new(),
            },
        }
    }

    fn verdict(&self, verdict: Verdict) -> VerdictLabels {
        VerdictLabels {
            app: self.app.clone(),
            app_id: self.app_id.clone(),
            verdict: verdict.name(),
        }
    }

    fn path(&self, path: &'static str) -> PathLabels {
        PathLabels {
            app: self.app.clone(),
            app_id: self.app_id.clone(),
            path,
        }
    }

    fn reason(&self, verdict: Verdict) -> DropLabels {
        DropLabels {
            app: self.app.clone(),
            app_id: self.app_id.clone(),
            reason: verdict.name(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    app: String,
    app_id: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    app: String,
    app_id: String,
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    app: String,
    app_id: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLimitedLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabels {
    rcode: String,
    qtype: String,
}

/// The per-app families, registered once.
struct AppFamilies {
    packets: Family<AppLabels, Counter>,
    bytes: Family<AppLabels, Counter>,
    opened: Family<PathLabels, Counter>,
    closed: Family<PathLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    tls_failures: Family<AppLabels, Counter>,
    origin_failures: Family<AppLabels, Counter>,
}

impl AppFamilies {
    fn register(registry: &mut Registry) -> Self {
        let families = AppFamilies {
            packets: Family::default(),
            bytes: Family::default(),
            opened: Family::default(),
            closed: Family::default(),
            drops: Family::default(),
            tls_failures: Family::default(),
            origin_failures: Family::default(),
        };
        registry.register(
            "app_packets",
            "Packets of the app, fast path and agent path",
            families.packets.clone(),
        );
        registry.register(
            "app_bytes",
            "Bytes the app moved: fast-path packets, and what the agent relayed both ways",
            families.bytes.clone(),
        );
        registry.register(
            "flows_opened",
            "Flows opened: path=xdp or tc fast-path flows (the hook that opened them), \
             path=agent connections and UDP flows",
            families.opened.clone(),
        );
        registry.register(
            "flows_closed",
            "Flows ended (idle, closed or reset), by path as flows_opened",
            families.closed.clone(),
        );
        registry.register(
            "drops",
            "Packets (fast path) or connections (agent) refused or lost, by reason",
            families.drops.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Client TLS handshakes that failed or timed out",
            families.tls_failures.clone(),
        );
        registry.register(
            "origin_failures",
            "Connections whose origin could not be reached, refused, timed out or failed TLS",
            families.origin_failures.clone(),
        );
        families
    }

    /// Every series of `labels` at 0 (those not there yet).
    fn zero(&self, labels: &AppLabels) {
        create(&self.packets, labels);
        create(&self.bytes, labels);
        for path in [PATH_XDP, PATH_TC, PATH_AGENT] {
            create(&self.opened, &labels.path(path));
            create(&self.closed, &labels.path(path));
        }
        for reason in drop_reasons() {
            create(&self.drops, &labels.reason(reason));
        }
        create(&self.tls_failures, labels);
        create(&self.origin_failures, labels);
    }

    /// The bytes of an agent connection row (client to origin on
    /// `conn_accepted`, origin to client on `conn_closed`). The fast
    /// path's flow rows carry none: its bytes are its packets'.
    fn add_agent_bytes(&self, labels: &AppLabels, path: &str, row: &StatsRow) {
        if path == PATH_AGENT {
            self.bytes.get_or_create(labels).inc_by(row.bytes);
        }
    }

    /// Adds one counter row of the app `labels` by its verdict's meaning.
    fn add(&self, labels: &AppLabels, row: &StatsRow) {
        match meaning(row.verdict) {
            Meaning::Forwarded => {
                self.packets.get_or_create(labels).inc_by(row.packets);
                self.bytes.get_or_create(labels).inc_by(row.bytes);
            }
            Meaning::ToAgent => {
                self.packets.get_or_create(labels).inc_by(row.packets);
            }
            Meaning::Opened(path) => {
                self.opened
                    .get_or_create(&labels.path(path))
                    .inc_by(row.packets);
                self.add_agent_bytes(labels, path, row);
            }
            Meaning::Closed(path) => {
                self.closed
                    .get_or_create(&labels.path(path))
                    .inc_by(row.packets);
                self.add_agent_bytes(labels, path, row);
            }
            Meaning::Drop => {
                self.drops
                    .get_or_create(&labels.reason(row.verdict))
                    .inc_by(row.packets);
            }
            Meaning::TlsFailure => {
                self.tls_failures.get_or_create(labels).inc_by(row.packets);
            }
            Meaning::OriginFailure => {
                self.origin_failures
                    .get_or_create(labels)
                    .inc_by(row.packets);
            }
            Meaning::Other => {}
        }
    }
}

/// Creates the series `labels` of `family` at 0 when it is not there.
fn create<L>(family: &Family<L, Counter>, labels: &L)
where
    L: Clone + std::hash::Hash + Eq,
{
    // The guard only holds the family's lock: let go of it at once.
    let _ = family.get_or_create(labels);
}

/// The counters in OpenMetrics text (ending in `# EOF`): `rows` as the
/// counter map gives them (`StatsRow::app` is the app's slot), named
/// after the apps of `config`, and the DNS server's answers when it runs
/// (`dns`; without it the family is left out).
///
/// Label values are app names, which validation limits to letters,
/// digits, '.', '-' and '*'; the encoder escapes anyway.
pub fn render(
    config: &Config,
    rows: &[StatsRow],
    dns: Option<&DnsAnswers>,
    flows: Option<&FlowView>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("spectrum");
    let events = Family::<VerdictLabels, Counter>::default();
    let bytes = Family::<VerdictLabels, Counter>::default();
    let apps = Gauge::<i64>::default();
    apps.set(i64::try_from(config.apps.len()).unwrap_or(i64::MAX));
    registry.register(
        "events",
        "Packets, connections or flows by app and verdict (the verdict says which)",
        events.clone(),
    );
    registry.register("bytes", "Bytes by app and verdict", bytes.clone());
    registry.register("apps", "Apps the agent runs", apps);
    let per_app = AppFamilies::register(&mut registry);

    // A map, not a search per row: up to MAX_APPS slots times
    // Verdict::COUNT verdicts.
    let by_slot: HashMap<u32, &App> = config.apps.iter().map(|a| (a.slot, a)).collect();
    for app in &config.apps {
        per_app.zero(&AppLabels::of(Some(app)));
    }
    for row in rows {
        let app = row.app.and_then(|slot| by_slot.get(&slot).copied());
        let labels = AppLabels::of(app);
        let raw = labels.verdict(row.verdict);
        events.get_or_create(&raw).inc_by(row.packets);
        bytes.get_or_create(&raw).inc_by(row.bytes);
        // The global row is traffic of no app: not an app's, even retired.
        if row.app.is_some() {
            per_app.add(&labels, row);
        }
    }

    if let Some(flows) = flows {
        let entries = Family::<StateLabels, Gauge<i64>>::default();
        registry.register(
            "flow_entries",
            "Entries in the kernel's flow tables (two per flow) by state: embryonic \
             (a TCP handshake not complete, a UDP flow not answered) or established, \
             as the flow collector counted them (its last complete walk, or the walk \
             under way when that has seen more)",
            entries.clone(),
        );
        for (state, count) in [
            ("embryonic", flows.occupancy.embryonic),
            ("established", flows.occupancy.established),
        ] {
            entries
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let ports = Gauge::<i64>::default();
        ports.set(i64::from(config.edge.nat_ports.len()));
        registry.register(
            "nat_ports",
            "NAT source ports per (origin address and port, origin source): \
             edge.nat_ports, the fast-path flows one such tuple can hold",
            ports,
        );
        let in_use = Family::<NatLabels, Gauge<i64>>::default();
        registry.register(
            "nat_flows",
            "Fast-path flows holding a NAT port toward an origin address and port, \
             by origin source (the busiest tuples, as the flow collector's last \
             complete walk counted them)",
            in_use.clone(),
        );
        for row in &flows.nat {
            in_use
                .get_or_create(&NatLabels {
                    origin: row.origin.to_string(),
                    source: row.source.to_string(),
                })
                .set(i64::try_from(row.flows).unwrap_or(i64::MAX));
        }
    }

    if let Some(dns) = dns {
        let answers = Family::<DnsLabels, Counter>::default();
        registry.register(
            "dns_answers",
            "Answers of the embedded DNS server by response code and query type \
             (qtype \"-\": no single question could be read)",
            answers.clone(),
        );
        for (rcode, qtype, n) in dns.snapshot() {
            answers.get_or_create(&DnsLabels { rcode, qtype }).inc_by(n);
        }
        let limited = Family::<DnsLimitedLabels, Counter>::default();
        registry.register(
            "dns_limited",
            "What the embedded DNS server held back: UDP responses over a client \
             prefix's rate (action dropped or truncated, TC=1) and TCP connections \
             over dns_server.max_tcp_connections (tcp_refused)",
            limited.clone(),
        );
        for (action, n) in dns.limited() {
            limited
                .get_or_create(&DnsLimitedLabels { action })
                .inc_by(n);
        }
    }

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prometheus_parse::{Sample, Scrape, Value};

    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = r#"{
      "edge": {"interfaces": ["eth0"],
               "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}},
      "apps": [
        {"id": "0123456789abcdef0123456789abcdef", "protocol": "tcp/1000-2000",
         "dns": {"type": "CNAME", "name": "fast.example.com"},
         "origin_direct": ["tcp://192.0.2.1:3000-4000"]},
        {"id": "fedcba9876543210fedcba9876543210", "protocol": "tcp/25",
         "dns": {"type": "ADDRESS", "name": "mail.example.com"},
         "origin_direct": ["tcp://192.0.2.25:25"], "proxy_protocol": "v1",
         "edge_ips": {"type": "static", "ips": ["198.51.100.200"]}},
        {"id": "00000000000000000000000000000003", "protocol": "udp/53",
         "dns": {"type": "CNAME", "name": "new.example.com"},
         "origin_direct": ["udp://192.0.2.53:53"]}
      ]
    }"#;
    const FAST_ID: &str = "0123456789abcdef0123456789abcdef";
    const MAIL_ID: &str = "fedcba9876543210fedcba9876543210";
    const NEW_ID: &str = "00000000000000000000000000000003";

    /// The test config with slots as a live change leaves them: mail
    /// moved to slot 5 (slot 1 is its retired version).
    fn config() -> Config {
        let mut config = load_str(CONFIG, false).expect("config").config;
        config.apps[1].slot = 5;
        config
    }

    fn row(app: Option<u32>, verdict: Verdict, packets: u64, bytes: u64) -> StatsRow {
        StatsRow {
            app,
            verdict,
            packets,
            bytes,
        }
    }

    fn rows() -> Vec<StatsRow> {
        vec![
            // fast.example.com, slot 0: the fast path.
            row(Some(0), Verdict::ToOrigin, 10, 1000),
            row(Some(0), Verdict::ToClient, 5, 700),
            row(Some(0), Verdict::NeighborPending, 1, 60),
            row(Some(0), Verdict::FlowOpened, 2, 0),
            // (The agent writes no bytes here; any would not be traffic.)
            row(Some(0), Verdict::FlowExpired, 1, 99),
            // Flows its fast path opened at TC ingress.
            row(Some(0), Verdict::FlowOpenedTc, 6, 0),
            row(Some(0), Verdict::FlowExpiredTc, 4, 0),
            row(Some(0), Verdict::BlockedCountry, 3, 180),
            row(Some(0), Verdict::NatFailed, 4, 240),
            row(Some(0), Verdict::TooBig, 1, 9000),
            // mail.example.com, slot 5: the agent path.
            row(Some(5), Verdict::ToAgent, 40, 4000),
            row(Some(5), Verdict::ConnAccepted, 3, 500),
            row(Some(5), Verdict::ConnClosed, 2, 7000),
            row(Some(5), Verdict::ConnTimeout, 1, 0),
            row(Some(5), Verdict::TlsFailed, 2, 0),
            row(Some(5), Verdict::OriginFailed, 6, 0),
            row(Some(5), Verdict::ConnLimited, 7, 0),
            // Its retired version, slot 1, still closing connections.
            row(Some(1), Verdict::ConnClosed, 1, 300),
            row(Some(1), Verdict::OriginFailed, 1, 0),
            // Packets of no app.
            row(None, Verdict::NoListener, 9, 900),
        ]
    }

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
    }

    fn number(sample: &Sample) -> f64 {
        match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{}: {other:?}", sample.metric),
        }
    }

    /// The samples of `metric`, by their labels (sorted `k=v` pairs).
    fn family(scrape: &Scrape, metric: &str) -> BTreeMap<String, f64> {
        let mut found = BTreeMap::new();
        for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.sort();
            let previous = found.insert(labels.join(","), number(sample));
            assert_eq!(previous, None, "{metric} {labels:?} twice");
        }
        found
    }

    /// The value of `metric` at `labels` (given in sorted order).
    fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let key: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        family(scrape, metric).get(&key.join(",")).copied()
    }

    fn app<'a>(name: &'a str, id: &'a str) -> [(&'a str, &'a str); 2] {
        [("app", name), ("app_id", id)]
    }

    #[test]
    fn ends_with_eof_and_keeps_the_raw_families() {
        let text = render(&config(), &rows(), None, None).expect("render");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let scrape = parse(&text);
        let events = |name, id, verdict| {
            value(
                &scrape,
                "spectrum_events_total",
                &[("app", name), ("app_id", id), ("verdict", verdict)],
            )
        };
        let bytes = |name, id, verdict| {
            value(
                &scrape,
                "spectrum_bytes_total",
                &[("app", name), ("app_id", id), ("verdict", verdict)],
            )
        };
        assert_eq!(events("fast.example.com", FAST_ID, "to_origin"), Some(10.0));
        assert_eq!(
            bytes("fast.example.com", FAST_ID, "to_origin"),
            Some(1000.0)
        );
        assert_eq!(
            events("mail.example.com", MAIL_ID, "conn_closed"),
            Some(2.0)
        );
        // The retired slot and the global row, under "-".
        assert_eq!(events("-", "", "conn_closed"), Some(1.0));
        assert_eq!(bytes("-", "", "conn_closed"), Some(300.0));
        assert_eq!(events("-", "", "no_listener"), Some(9.0));
        // One series per row: no zero series in the raw view.
        assert_eq!(family(&scrape, "spectrum_events_total").len(), rows().len());
        assert_eq!(value(&scrape, "spectrum_apps", &[]), Some(3.0));
        // No DNS server, no DNS family.
        assert!(!text.contains("spectrum_dns_answers"));
    }

    #[test]
    fn per_app_families_by_meaning() {
        let scrape = parse(&render(&config(), &rows(), None, None).expect("render"));
        let fast = app("fast.example.com", FAST_ID);
        let mail = app("mail.example.com", MAIL_ID);
        let retired = app("-", "");
        let at = |metric: &str, labels: &[(&str, &str)]| {
            value(&scrape, metric, labels).unwrap_or_else(|| panic!("no {metric} {labels:?}"))
        };
        let with = |base: [(&'static str, &'static str); 2],
                    extra: (&'static str, &'static str)| {
            let mut labels = base.to_vec();
            labels.push(extra);
            labels
        };

        // Packets: delivered by XDP, or handed to the agent.
        assert_eq!(at("spectrum_app_packets_total", &fast), 16.0);
        assert_eq!(at("spectrum_app_packets_total", &mail), 40.0);
        // Bytes: XDP's delivered packets; the agent's relayed bytes (not
        // the ToAgent packets' bytes, which would count them twice).
        assert_eq!(at("spectrum_app_bytes_total", &fast), 1760.0);
        assert_eq!(at("spectrum_app_bytes_total", &mail), 7500.0);
        assert_eq!(at("spectrum_app_bytes_total", &retired), 300.0);

        let opened = "spectrum_flows_opened_total";
        let closed = "spectrum_flows_closed_total";
        assert_eq!(at(opened, &with(fast, ("path", "xdp"))), 2.0);
        assert_eq!(at(closed, &with(fast, ("path", "xdp"))), 1.0);
        assert_eq!(at(opened, &with(fast, ("path", "tc"))), 6.0);
        assert_eq!(at(closed, &with(fast, ("path", "tc"))), 4.0);
        assert_eq!(at(opened, &with(fast, ("path", "agent"))), 0.0);
        assert_eq!(at(opened, &with(mail, ("path", "agent"))), 3.0);
        assert_eq!(at(closed, &with(mail, ("path", "agent"))), 2.0);
        assert_eq!(at(closed, &with(mail, ("path", "xdp"))), 0.0);
        assert_eq!(at(closed, &with(retired, ("path", "agent"))), 1.0);

        let drops = "spectrum_drops_total";
        assert_eq!(at(drops, &with(fast, ("reason", "blocked_country"))), 3.0);
        assert_eq!(at(drops, &with(fast, ("reason", "nat_failed"))), 4.0);
        assert_eq!(at(drops, &with(fast, ("reason", "blocked_ip"))), 0.0);
        assert_eq!(at(drops, &with(mail, ("reason", "conn_limited"))), 7.0);
        // Not drops: too_big, conn_timeout, the failures with families.
        for reason in ["too_big", "conn_timeout", "tls_failed", "origin_failed"] {
            assert_eq!(value(&scrape, drops, &with(fast, ("reason", reason))), None);
        }

        assert_eq!(at("spectrum_tls_handshake_failures_total", &mail), 2.0);
        assert_eq!(at("spectrum_tls_handshake_failures_total", &fast), 0.0);
        assert_eq!(at("spectrum_origin_failures_total", &mail), 6.0);
        assert_eq!(at("spectrum_origin_failures_total", &retired), 1.0);

        // The global row is nobody's: the retired app has only what its
        // slot counted.
        assert_eq!(value(&scrape, "spectrum_app_packets_total", &retired), None);
        assert_eq!(
            value(&scrape, drops, &with(retired, ("reason", "blocked_ip"))),
            None
        );
    }

    #[test]
    fn flow_tables_and_nat_use_when_the_collector_reports() {
        let view = FlowView {
            occupancy: crate::kernel::conntrack_gc::Occupancy {
                established: 6,
                embryonic: 40,
            },
            nat: vec![crate::kernel::nat_use::NatUse {
                origin: "192.0.2.1:80".parse().unwrap(),
                source: "10.0.2.11".parse().unwrap(),
                flows: 3,
            }],
        };
        let scrape = parse(&render(&config(), &[], None, Some(&view)).expect("render"));
        let entries = "spectrum_flow_entries";
        assert_eq!(
            value(&scrape, entries, &[("state", "embryonic")]),
            Some(40.0)
        );
        assert_eq!(
            value(&scrape, entries, &[("state", "established")]),
            Some(6.0)
        );
        let nat = [("origin", "192.0.2.1:80"), ("source", "10.0.2.11")];
        assert_eq!(value(&scrape, "spectrum_nat_flows", &nat), Some(3.0));
        assert!(value(&scrape, "spectrum_nat_ports", &[]).is_some_and(|v| v > 0.0));
        // Without the collector's view (no kernel: tests, a CLI), none.
        let scrape = parse(&render(&config(), &[], None, None).expect("render"));
        assert_eq!(value(&scrape, entries, &[("state", "embryonic")]), None);
    }

    #[test]
    fn every_running_app_has_every_series_at_zero_before_traffic() {
        let scrape = parse(&render(&config(), &[], None, None).expect("render"));
        let reasons: Vec<&str> = drop_reasons().map(Verdict::name).collect();
        assert_eq!(
            reasons,
            [
                "nat_failed",
                "no_origin",
                "no_flow",
                "no_route",
                "blocked_ip",
                "blocked_range",
                "blocked_asn",
                "blocked_country",
                "conn_limited",
                "bad_reply",
                "rst_invalid",
                "stray_syn",
                "client_limited",
                "syn_cookie_bad",
                "syn_proxy_origin_failed",
            ]
        );
        for (name, id) in [
            ("fast.example.com", FAST_ID),
            ("mail.example.com", MAIL_ID),
            ("new.example.com", NEW_ID),
        ] {
            let labels = app(name, id);
            for metric in [
                "spectrum_app_packets_total",
                "spectrum_app_bytes_total",
                "spectrum_tls_handshake_failures_total",
                "spectrum_origin_failures_total",
            ] {
                assert_eq!(
                    value(&scrape, metric, &labels),
                    Some(0.0),
                    "{metric} {name}"
                );
            }
            for metric in ["spectrum_flows_opened_total", "spectrum_flows_closed_total"] {
                for path in ["agent", "xdp", "tc"] {
                    let mut with = labels.to_vec();
                    with.push(("path", path));
                    assert_eq!(value(&scrape, metric, &with), Some(0.0), "{metric} {name}");
                }
            }
            for &reason in &reasons {
                let mut with = labels.to_vec();
                with.push(("reason", reason));
                assert_eq!(
                    value(&scrape, "spectrum_drops_total", &with),
                    Some(0.0),
                    "{reason} {name}"
                );
            }
        }
        // Exactly those: no retired app when nothing was counted for it.
        assert_eq!(family(&scrape, "spectrum_app_packets_total").len(), 3);
        assert_eq!(
            family(&scrape, "spectrum_drops_total").len(),
            3 * reasons.len()
        );
        assert_eq!(family(&scrape, "spectrum_flows_opened_total").len(), 9);
        assert!(family(&scrape, "spectrum_events_total").is_empty());
    }

    #[test]
    fn dns_family_is_there_when_the_server_runs() {
        let answers = DnsAnswers::default();
        // No answers yet: the family is there, empty.
        let text = render(&config(), &[], Some(&answers), None).expect("render");
        assert!(
            text.contains("# TYPE spectrum_dns_answers counter"),
            "{text}"
        );
        assert!(family(&parse(&text), "spectrum_dns_answers_total").is_empty());
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn dns_answers_of_a_real_authority() {
        use crate::dns::Authority;

        let json = serde_json::json!({
            "edge": {"interfaces": ["eth0"],
                     "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}},
            "apps": [{"protocol": "tcp/22", "dns": {"type": "CNAME", "name": "ssh.example.test"},
                      "origin_direct": ["tcp://192.0.2.1:22"]}],
            "dns_server": {"listen": ["127.0.0.1:0"], "zones": ["example.test"]}
        });
        let config = load_str(&json.to_string(), false).expect("config").config;
        let authority = Authority::from_config(&config).expect("authority");
        let src = "192.0.2.99:5353".parse().expect("address");
        // ssh.example.test A, twice; nope.example.test AAAA; a question
        // cut short (FORMERR, qtype "-").
        let query = |name: &str, qtype: u8| {
            let mut bytes = vec![0x42, 0x42, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in name.split('.') {
                bytes.push(u8::try_from(label.len()).expect("label"));
                bytes.extend_from_slice(label.as_bytes());
            }
            bytes.extend_from_slice(&[0, 0, qtype, 0, 1]);
            bytes
        };
        for bytes in [
            query("ssh.example.test", 1),
            query("ssh.example.test", 1),
            query("nope.example.test", 28),
            query("ssh.example.test", 1)[..16].to_vec(),
        ] {
            assert!(authority.answer(&bytes, src).await.is_some());
        }
        let scrape =
            parse(&render(&config, &[], Some(&authority.answers()), None).expect("render"));
        assert_eq!(
            family(&scrape, "spectrum_dns_answers_total"),
            BTreeMap::from([
                ("qtype=-,rcode=FORMERR".to_owned(), 1.0),
                ("qtype=A,rcode=NOERROR".to_owned(), 2.0),
                ("qtype=AAAA,rcode=NXDOMAIN".to_owned(), 1.0),
            ])
        );
    }
}
