//! `validate()`: the file as written -> the model, or every reason it cannot be.
//!
//! Each check records its errors and goes on, so one run reports every
//! problem in the file, not just the first.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::leases::Leases;
use super::model::{
    AccessRule, AddressPool, Api, App, AppId, ClientLimits, Config, ConfigError, DEFAULT_DNS_TTL,
    DEFAULT_NAT_PORTS, DatapathMode, Dns, DnsKind, DnsServer, ERR_DNS_EDGE_IPS, ERR_ORIGIN_ADDR,
    ERR_ORIGIN_CHOICE, ERR_ORIGIN_DNS, Edge, FlowTimeouts, GeoIp, MIN_ORIGIN_DNS_TTL, Origin,
    OriginAddr, OriginDns, OriginFamily, OriginSource, PortRange, Protocol, ProxyProtocol,
    RuleAction, RuleTarget, TcpProxy, TlsMode, UdpProxy, Warning, XdpMode,
};
use super::schema::{
    AccessRuleFile, ApiFile, AppFile, ConfigFile, DnsServerFile, EdgeFile, EdgeIpsFile,
    OriginDnsFile, OriginPortFile, ProxyProtocolFile, RuleConfigurationFile, TcpProxyFile,
    UdpProxyFile,
};

/// Checks a parsed file and builds the model from it, as a first start
/// would: no app holds a pool address yet.
pub fn validate(file: &ConfigFile) -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
    validate_with_leases(file, &Leases::default())
}

/// Checks a parsed file and builds the model from it; apps with dynamic
/// edge_ips keep the pool addresses `leases` gives them where they still can.
pub fn validate_with_leases(
    file: &ConfigFile,
    leases: &Leases,
) -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
    let mut v = Validator::default();
    let (edge, pools) = v.edge(&file.edge);
    let drafts: Vec<AppDraft> = file
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| v.app(i, app, &pools))
        .collect();
    v.duplicate_ids(&drafts);
    let draft_limits: Vec<ClientLimits> = (file.apps.iter().enumerate())
        .map(|(i, app)| v.client_limits(edge.client_limits, app.client_limits.as_ref(), i))
        .collect();
    let dns_server = file
        .dns_server
        .as_ref()
        .and_then(|d| v.dns_server(d, &file.apps));
    // The DNS server's own addresses are never handed to an app.
    let reserved: Vec<IpAddr> = dns_server
        .iter()
        .flat_map(|d| d.listen.iter().map(|a| a.ip()))
        .collect();
    let edge_addrs = v.edge_addresses(&drafts, &pools, leases, &reserved);
    v.overlapping_listeners(&file.apps, &drafts, &edge_addrs);
    if let Some(d) = &dns_server {
        let sockets: Vec<_> = (d.listen.iter().enumerate())
            .map(|(k, addr)| (format!("dns_server.listen[{k}]"), *addr))
            .collect();
        v.own_sockets_free(&sockets, "the DNS server", &drafts, &edge_addrs);
    }
    let access_rules = v.access_rules(&file.access_rules, &edge.geoip);
    let api = file.api.as_ref().and_then(|a| v.api(a));
    if let Some(a) = &api {
        let sockets = [("api.listen".to_string(), a.listen)];
        v.own_sockets_free(&sockets, "the management API", &drafts, &edge_addrs);
    }
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    let apps: Option<Vec<App>> = drafts
        .into_iter()
        .zip(edge_addrs)
        .enumerate()
        .map(|(slot, (draft, addrs))| {
            let dynamic = matches!(draft.edge_ips, Some(EdgeIps::Dynamic { .. }));
            let mut app = draft.finish(addrs?, dynamic)?;
            app.slot = slot as u32;
            app.nat_at_tc = app.datapath.unwrap_or(edge.datapath).at_tc(app.protocol);
            app.client_limits = draft_limits[slot];
            Some(app)
        })
        .collect();
    match apps {
        Some(apps) => Ok((
            Config {
                edge,
                apps,
                access_rules,
                dns_server,
                api,
            },
            v.warnings,
        )),
        // Every check that leaves a part out records an error; this is a bug.
        None => Err(vec![ConfigError::new(
            "apps",
            "",
            "internal error: an app was refused without a reason",
        )]),
    }
}

/// A `created_on`/`modified_on` as kept: a string, or nothing (other
/// values, from an export, are ignored as before).
fn timestamp(value: Option<&serde_json::Value>) -> Option<String> {
    value.and_then(serde_json::Value::as_str).map(str::to_owned)
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn key(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// An address pool as the rest of validation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    Absent,
    /// Present but refused (already reported): checks that need it are skipped.
    Invalid,
    /// Always of the family the pool is for.
    Net(IpNet),
}

struct Pools {
    v4: Pool,
    v6: Pool,
}

impl Pools {
    fn get(&self, family: Family) -> Pool {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

fn pool_field(family: Family) -> String {
    format!("edge.address_pool.{}", family.key())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EdgeIps {
    Static(Vec<IpAddr>),
    Dynamic {
        connectivity: String,
        v4: bool,
        v6: bool,
    },
}

/// What one app's checks produced; a `None` part has been reported.
struct AppDraft {
    id: Option<AppId>,
    id_generated: bool,
    protocol: Option<(Protocol, PortRange)>,
    dns: Option<Dns>,
    edge_ips: Option<EdgeIps>,
    origin: Option<Origin>,
    proxy_protocol: Option<ProxyProtocol>,
    proxy_header_every_datagram: bool,
    tls: Option<TlsMode>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_sni_certs: Vec<(PathBuf, PathBuf)>,
    origin_sni: Option<String>,
    origin_ca: Option<PathBuf>,
    ip_firewall: bool,
    created_on: Option<String>,
    modified_on: Option<String>,
    datapath: Option<DatapathMode>,
}

impl AppDraft {
    fn finish(self, edge_addrs: Vec<IpAddr>, edge_ips_dynamic: bool) -> Option<App> {
        let (protocol, edge_ports) = self.protocol?;
        Some(App {
            id: self.id?,
            slot: 0,
            created_on: self.created_on,
            modified_on: self.modified_on,
            protocol,
            edge_ports,
            dns: self.dns?,
            edge_addrs,
            edge_ips_dynamic,
            origin: self.origin?,
            proxy_protocol: self.proxy_protocol?,
            proxy_header_every_datagram: self.proxy_header_every_datagram,
            tls: self.tls?,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_sni_certs: self.tls_sni_certs,
            origin_sni: self.origin_sni,
            origin_ca: self.origin_ca,
            ip_firewall: self.ip_firewall,
            datapath: self.datapath,
            // Set once the edge's default is known.
            nat_at_tc: false,
            client_limits: ClientLimits::default(),
        })
    }
}

enum Mode {
    Act(RuleAction),
    Ignored,
    Invalid,
}

impl Validator {
    /// A `datapath` setting: xdp, tc or auto.
    fn datapath(&mut self, field: &str, text: Option<&str>) -> Option<DatapathMode> {
        let text = text?;
        let mode = DatapathMode::parse(text);
        if mode.is_none() {
            self.error(
                None,
                field,
                text,
                "unknown datapath; expected xdp, tc or auto",
            );
        }
        mode
    }

    fn error(
        &mut self,
        code: Option<u32>,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            code,
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        });
    }

    fn warn(
        &mut self,
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.warnings.push(Warning::new(field, value, message));
    }

    // ---- edge ----

    fn edge(&mut self, e: &EdgeFile) -> (Edge, Pools) {
        if e.interfaces.is_empty() {
            self.error(
                None,
                "edge.interfaces",
                "",
                "at least one interface is needed",
            );
        }
        let mut seen = HashSet::new();
        for (k, name) in e.interfaces.iter().enumerate() {
            let field = format!("edge.interfaces[{k}]");
            if let Err(reason) = check_interface_name(name) {
                self.error(None, field, name, reason);
            } else if !seen.insert(name.as_str()) {
                self.error(None, field, name, "interface listed twice");
            }
        }
        let xdp_mode = match e.xdp_mode.as_deref() {
            None => None,
            Some("native") => Some(XdpMode::Native),
            Some("skb") => Some(XdpMode::Skb),
            Some(other) => {
                self.error(
                    None,
                    "edge.xdp_mode",
                    other,
                    "unknown xdp_mode; expected native or skb",
                );
                None
            }
        };
        let datapath = self.datapath("edge.datapath", e.datapath.as_deref());
        let pools = Pools {
            v4: self.pool(Family::V4, e.address_pool.ipv4.as_deref()),
            v6: self.pool(Family::V6, e.address_pool.ipv6.as_deref()),
        };
        let address_pool = AddressPool {
            ipv4: match pools.v4 {
                Pool::Net(IpNet::V4(net)) => Some(net),
                _ => None,
            },
            ipv6: match pools.v6 {
                Pool::Net(IpNet::V6(net)) => Some(net),
                _ => None,
            },
        };
        let origin_source = OriginSource {
            ipv4: match self.source_addr(Family::V4, e.origin_source.ipv4.as_deref()) {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            },
            ipv6: match self.source_addr(Family::V6, e.origin_source.ipv6.as_deref()) {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            },
        };
        let geoip = GeoIp {
            country_db: self.path("edge.geoip.country_db", e.geoip.country_db.as_ref()),
            asn_db: self.path("edge.geoip.asn_db", e.geoip.asn_db.as_ref()),
        };
        let nat_ports = match e.nat_ports.as_deref().map(parse_port_range) {
            None => DEFAULT_NAT_PORTS,
            Some(Ok(range)) => range,
            Some(Err(reason)) => {
                self.error(
                    None,
                    "edge.nat_ports",
                    e.nat_ports.as_deref().unwrap_or_default(),
                    reason,
                );
                DEFAULT_NAT_PORTS
            }
        };
        let resolver = e
            .resolver
            .as_deref()
            .and_then(|text| match parse_resolver(text) {
                Ok(addr) => Some(addr),
                Err(reason) => {
                    self.error(None, "edge.resolver", text, reason);
                    None
                }
            });
        let mut flow_timeouts = FlowTimeouts::default();
        for (name, value, slot) in [
            (
                "tcp_new",
                e.flow_timeouts.tcp_new,
                &mut flow_timeouts.tcp_new,
            ),
            (
                "tcp_established",
                e.flow_timeouts.tcp_established,
                &mut flow_timeouts.tcp_established,
            ),
            (
                "tcp_closing",
                e.flow_timeouts.tcp_closing,
                &mut flow_timeouts.tcp_closing,
            ),
            ("udp", e.flow_timeouts.udp, &mut flow_timeouts.udp),
        ] {
            self.seconds(format!("edge.flow_timeouts.{name}"), value, slot);
        }
        let tcp_proxy = self.tcp_proxy(&e.tcp_proxy);
        let udp_proxy = self.udp_proxy(&e.udp_proxy);
        let (client_limits, errors) = ClientLimits::merged(
            ClientLimits::default(),
            &e.client_limits,
            "edge.client_limits",
        );
        self.errors.extend(errors);
        let edge = Edge {
            interfaces: e.interfaces.clone(),
            xdp_mode,
            datapath: datapath.unwrap_or_default(),
            address_pool,
            lease_file: e.address_pool.state_file.clone(),
            origin_source,
            geoip,
            nat_ports,
            resolver,
            flow_timeouts,
            tcp_proxy,
            udp_proxy,
            client_limits,
        };
        (edge, pools)
    }

    /// A limit on connections or flows: `slot` keeps its default when
    /// `value` is absent; out of 1..=1,000,000 is an error on `field`.
    fn count(&mut self, field: String, value: Option<u64>, slot: &mut usize) {
        match value {
            None => {}
            Some(n @ 1..=1_000_000) => *slot = n as usize,
            Some(n) => self.error(None, field, n.to_string(), "expected 1 to 1000000"),
        }
    }

    /// A timeout in seconds: `slot` keeps its default when `value` is absent;
    /// out of 1..=MAX_FLOW_TIMEOUT_SECS is an error on `field`.
    fn seconds(&mut self, field: String, value: Option<u64>, slot: &mut std::time::Duration) {
        match value {
            None => {}
            Some(secs @ 1..=MAX_FLOW_TIMEOUT_SECS) => *slot = std::time::Duration::from_secs(secs),
            Some(secs) => self.error(
                None,
                field,
                secs.to_string(),
                format!("expected 1 to {MAX_FLOW_TIMEOUT_SECS} seconds"),
            ),
        }
    }

    fn dns_server(&mut self, d: &DnsServerFile, apps: &[AppFile]) -> Option<DnsServer> {
        let errors = self.errors.len();
        if d.listen.is_empty() {
            self.error(
                None,
                "dns_server.listen",
                "",
                "needs at least one address to listen on",
            );
        }
        let mut listen = Vec::new();
        for (k, text) in d.listen.iter().enumerate() {
            match parse_resolver(text) {
                Ok(addr) if listen.contains(&addr) => self.error(
                    None,
                    format!("dns_server.listen[{k}]"),
                    text,
                    "listed twice",
                ),
                Ok(addr) => listen.push(addr),
                Err(_) => self.error(
                    None,
                    format!("dns_server.listen[{k}]"),
                    text,
                    "expected IP, IP:PORT or [IPv6]:PORT",
                ),
            }
        }
        if d.zones.is_empty() {
            self.error(
                None,
                "dns_server.zones",
                "",
                "needs at least one zone, e.g. \"example.com\"",
            );
        }
        let mut zones: Vec<String> = Vec::new();
        for (k, text) in d.zones.iter().enumerate() {
            let field = format!("dns_server.zones[{k}]");
            match check_dns_name(text, false) {
                Err(reason) => self.error(None, field, text, reason),
                Ok(()) => {
                    let zone = canonical_name(text);
                    if zones.contains(&zone) {
                        self.error(None, field, text, "listed twice");
                    } else {
                        zones.push(zone);
                    }
                }
            }
        }
        let nameserver = match (&d.nameserver, zones.first()) {
            (Some(text), _) => match check_dns_name(text, false) {
                Ok(()) => canonical_name(text),
                Err(reason) => {
                    self.error(None, "dns_server.nameserver", text, reason);
                    String::new()
                }
            },
            (None, Some(zone)) => format!("ns.{zone}"),
            (None, None) => String::new(),
        };
        let mut ttl = DEFAULT_DNS_TTL;
        match d.ttl {
            None => {}
            Some(n @ 1..=86_400) => ttl = n as u32,
            Some(n) => self.error(
                None,
                "dns_server.ttl",
                n.to_string(),
                "expected 1 to 86400 seconds",
            ),
        }
        if self.errors.len() > errors {
            return None;
        }
        if zones.iter().any(|zone| in_zone(&nameserver, zone)) {
            if listen.iter().all(|a| a.ip().is_unspecified()) {
                self.warn(
                    "dns_server.nameserver",
                    &nameserver,
                    "lies in a served zone but every listen address is unspecified \
                     (0.0.0.0 or ::): it gets no A/AAAA, so resolvers cannot reach it by name",
                );
            }
            if let Some(i) = apps
                .iter()
                .position(|a| canonical_name(&a.dns.name) == nameserver)
            {
                self.warn(
                    "dns_server.nameserver",
                    &nameserver,
                    format!(
                        "apps[{i}] has this name: its A/AAAA are the app's edge addresses, \
                         not the DNS server's"
                    ),
                );
            }
        }
        for (i, app) in apps.iter().enumerate() {
            let name = canonical_name(&app.dns.name);
            let name = name.strip_prefix("*.").unwrap_or(&name);
            if !zones.iter().any(|zone| in_zone(name, zone)) {
                self.warn(
                    format!("apps[{i}].dns.name"),
                    &app.dns.name,
                    "not in any of dns_server.zones; the embedded DNS server will not answer for it",
                );
            }
        }
        Some(DnsServer {
            listen,
            zones,
            nameserver,
            ttl,
        })
    }

    fn api(&mut self, a: &ApiFile) -> Option<Api> {
        let errors = self.errors.len();
        let listen = match a.listen.as_deref() {
            None => {
                self.error(None, "api.listen", "", "required, e.g. \"127.0.0.1:8080\"");
                None
            }
            Some(text) => match text.parse::<std::net::SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.error(None, "api.listen", text, "expected IP:PORT or [IPv6]:PORT");
                    None
                }
            },
        };
        if a.token_file.is_none() {
            self.error(
                None,
                "api.token_file",
                "",
                "required: a file whose first line is the bearer token",
            );
        }
        let zone = a.zone.clone().unwrap_or_default();
        let zone_ok = !zone.is_empty()
            && zone.len() <= 64
            && zone.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !zone_ok {
            self.error(
                None,
                "api.zone",
                &zone,
                "expected a zone id: 1-64 letters, digits or '-'",
            );
        }
        if self.errors.len() > errors {
            return None;
        }
        Some(Api {
            listen: listen?,
            token_file: a.token_file.clone()?,
            zone,
        })
    }

    /// The agent's own sockets (the DNS server's, the API's) may sit on an
    /// edge address, but no app may listen on their port there: XDP or
    /// sk_lookup would take their packets. `field` names each entry.
    fn own_sockets_free(
        &mut self,
        sockets: &[(String, std::net::SocketAddr)],
        what: &str,
        drafts: &[AppDraft],
        edge_addrs: &[Option<Vec<IpAddr>>],
    ) {
        for (field, listen) in sockets {
            for (i, (draft, addrs)) in drafts.iter().zip(edge_addrs).enumerate() {
                let (Some((protocol, ports)), Some(addrs)) = (draft.protocol, addrs) else {
                    continue;
                };
                let port = listen.port();
                if addrs.contains(&listen.ip()) && ports.start <= port && port <= ports.end {
                    let name = draft.dns.as_ref().map_or("?", |d| d.name.as_str());
                    self.error(
                        None,
                        field.clone(),
                        listen.to_string(),
                        format!(
                            "apps[{i}] ({name}) listens on {protocol}/{port} of this address; \
                             {what} needs it"
                        ),
                    );
                }
            }
        }
    }

    fn tcp_proxy(&mut self, file: &TcpProxyFile) -> TcpProxy {
        let mut out = TcpProxy::default();
        for (name, value, slot) in [
            (
                "handshake_timeout",
                file.handshake_timeout,
                &mut out.handshake_timeout,
            ),
            (
                "connect_timeout",
                file.connect_timeout,
                &mut out.connect_timeout,
            ),
            ("idle_timeout", file.idle_timeout, &mut out.idle_timeout),
        ] {
            self.seconds(format!("edge.tcp_proxy.{name}"), value, slot);
        }
        let field = "edge.tcp_proxy.max_connections".to_string();
        self.count(field, file.max_connections, &mut out.max_connections);
        let field = "edge.tcp_proxy.max_connections_per_app".to_string();
        let per_app = &mut out.max_connections_per_app;
        self.count(field, file.max_connections_per_app, per_app);
        out
    }

    /// An app's `client_limits` over the edge's.
    fn client_limits(
        &mut self,
        edge: ClientLimits,
        file: Option<&super::schema::ClientLimitsFile>,
        i: usize,
    ) -> ClientLimits {
        let Some(file) = file else {
            return edge;
        };
        let at = format!("apps[{i}].client_limits");
        let (limits, errors) = ClientLimits::merged(edge, file, &at);
        self.errors.extend(errors);
        limits
    }

    fn udp_proxy(&mut self, file: &UdpProxyFile) -> UdpProxy {
        let mut out = UdpProxy::default();
        let field = "edge.udp_proxy.idle_timeout".to_string();
        self.seconds(field, file.idle_timeout, &mut out.idle_timeout);
        let field = "edge.udp_proxy.max_flows".to_string();
        self.count(field, file.max_flows, &mut out.max_flows);
        out
    }

    fn pool(&mut self, family: Family, text: Option<&str>) -> Pool {
        let Some(text) = text else {
            return Pool::Absent;
        };
        let field = pool_field(family);
        match parse_network(text) {
            Ok(net) if Family::of(net.addr()) == family => Pool::Net(net),
            Ok(_) => {
                let other = if family == Family::V4 {
                    Family::V6
                } else {
                    Family::V4
                };
                self.error(
                    None,
                    field,
                    text,
                    format!(
                        "not an {} network; it belongs in {}",
                        family.name(),
                        pool_field(other)
                    ),
                );
                Pool::Invalid
            }
            Err(reason) => {
                self.error(None, field, text, reason);
                Pool::Invalid
            }
        }
    }

    fn source_addr(&mut self, family: Family, text: Option<&str>) -> Option<IpAddr> {
        let text = text?;
        let field = format!("edge.origin_source.{}", family.key());
        match text.parse::<IpAddr>() {
            Ok(ip) if Family::of(ip) == family && !ip.is_unspecified() && !ip.is_multicast() => {
                Some(ip)
            }
            Ok(_) => {
                self.error(
                    None,
                    field,
                    text,
                    format!("expected a unicast {} address", family.name()),
                );
                None
            }
            Err(_) => {
                self.error(
                    None,
                    field,
                    text,
                    format!("not an {} address", family.name()),
                );
                None
            }
        }
    }

    fn path(&mut self, field: &str, path: Option<&PathBuf>) -> Option<PathBuf> {
        let path = path?;
        if path.as_os_str().is_empty() {
            self.error(None, field, "", "empty path; leave the setting out instead");
            return None;
        }
        Some(path.clone())
    }

    // ---- one app ----

    fn app(&mut self, i: usize, a: &AppFile, pools: &Pools) -> AppDraft {
        let at = |name: &str| format!("apps[{i}].{name}");

        let protocol = match parse_protocol(&a.protocol) {
            Ok(p) => Some(p),
            Err(reason) => {
                self.error(None, at("protocol"), &a.protocol, reason);
                None
            }
        };
        let dns = self.dns(i, a);
        let (id, id_generated) = match &a.id {
            Some(text) => match text.parse::<AppId>() {
                Ok(id) => (Some(id), false),
                Err(e) => {
                    self.error(None, at("id"), text, e.to_string());
                    (None, false)
                }
            },
            None => {
                let generated = match (protocol, &dns) {
                    (Some((proto, ports)), Some(dns)) => {
                        Some(AppId::generated(proto, ports, &dns.name))
                    }
                    _ => None,
                };
                (generated, true)
            }
        };
        let edge_ips = self.edge_ips(i, a.edge_ips.as_ref(), pools);
        if let (Some(dns), Some(edge_ips)) = (&dns, &edge_ips) {
            self.dns_fits_edge_ips(i, dns.kind, edge_ips, a.edge_ips.is_some());
        }
        let origin = self.origin(i, a, protocol);
        let proto = protocol.map(|(p, _)| p);
        let proxy_protocol = match (a.spp, a.proxy_protocol.as_ref()) {
            (Some(true), None) => {
                self.proxy_protocol(i, Some(&ProxyProtocolFile::Name("simple".into())), proto)
            }
            (Some(true), Some(_)) => {
                self.error(
                    None,
                    format!("apps[{i}].spp"),
                    "true",
                    "spp is the legacy form of proxy_protocol: simple; set only one of them",
                );
                None
            }
            _ => self.proxy_protocol(i, a.proxy_protocol.as_ref(), proto),
        };
        let proxy_header_every_datagram =
            self.proxy_protocol_udp(i, a.proxy_protocol_udp.as_deref(), proxy_protocol, proto);
        let tls = self.tls(i, a, proto);

        match a.traffic_type.as_deref() {
            None | Some("direct") => {}
            Some(t @ ("http" | "https")) => {
                self.error(
                    None,
                    at("traffic_type"),
                    t,
                    "not supported: this proxy is L4 only",
                );
            }
            Some(other) => {
                self.error(
                    None,
                    at("traffic_type"),
                    other,
                    "unknown traffic_type; only direct is supported",
                );
            }
        }
        if a.argo_smart_routing == Some(true) {
            self.error(
                None,
                at("argo_smart_routing"),
                "true",
                "Argo Smart Routing is not supported; set it to false or leave it out",
            );
        }

        let terminates = matches!(tls, Some(mode) if mode != TlsMode::Off);
        let to_origin = matches!(tls, Some(TlsMode::Full | TlsMode::Strict));
        AppDraft {
            id,
            id_generated,
            protocol,
            dns,
            edge_ips,
            origin,
            proxy_protocol,
            proxy_header_every_datagram,
            tls,
            // What a mode ignores (warned about above) stays out of the
            // model: nothing reads or checks those files.
            tls_cert: a.tls_cert.clone().filter(|_| terminates),
            tls_key: a.tls_key.clone().filter(|_| terminates),
            tls_sni_certs: a
                .tls_sni_certs
                .iter()
                .filter(|_| terminates)
                .map(|pair| (pair.cert.clone(), pair.key.clone()))
                .collect(),
            origin_sni: a.origin_sni.clone().filter(|_| to_origin),
            origin_ca: a.origin_ca.clone().filter(|_| tls == Some(TlsMode::Strict)),
            ip_firewall: a.ip_firewall.unwrap_or(false),
            created_on: timestamp(a.created_on.as_ref()),
            modified_on: timestamp(a.modified_on.as_ref()),
            datapath: self.datapath(&at("datapath"), a.datapath.as_deref()),
        }
    }

    fn dns(&mut self, i: usize, a: &AppFile) -> Option<Dns> {
        let kind = match a.dns.kind.as_str() {
            "CNAME" => Some(DnsKind::Cname),
            "ADDRESS" => Some(DnsKind::Address),
            other => {
                self.error(
                    None,
                    format!("apps[{i}].dns.type"),
                    other,
                    "unknown dns type; expected CNAME or ADDRESS",
                );
                None
            }
        };
        let name_ok = match check_dns_name(&a.dns.name, true) {
            Ok(()) => true,
            Err(reason) => {
                self.error(None, format!("apps[{i}].dns.name"), &a.dns.name, reason);
                false
            }
        };
        let kind = kind?;
        name_ok.then(|| Dns {
            kind,
            name: a.dns.name.clone(),
        })
    }

    fn edge_ips(&mut self, i: usize, e: Option<&EdgeIpsFile>, pools: &Pools) -> Option<EdgeIps> {
        let Some(e) = e else {
            return Some(EdgeIps::Dynamic {
                connectivity: "all".to_string(),
                v4: true,
                v6: true,
            });
        };
        let at = |name: &str| format!("apps[{i}].edge_ips.{name}");
        match e.kind.as_str() {
            "dynamic" => {
                if let Some(ips) = &e.ips {
                    self.error(
                        None,
                        at("ips"),
                        ips.join(", "),
                        "ips are only for type static",
                    );
                }
                let connectivity = e.connectivity.as_deref().unwrap_or("all");
                let (v4, v6) = match connectivity {
                    "all" => (true, true),
                    "ipv4" => (true, false),
                    "ipv6" => (false, true),
                    other => {
                        self.error(
                            None,
                            at("connectivity"),
                            other,
                            "unknown connectivity; expected all, ipv4 or ipv6",
                        );
                        return None;
                    }
                };
                Some(EdgeIps::Dynamic {
                    connectivity: connectivity.to_string(),
                    v4,
                    v6,
                })
            }
            "static" => {
                if let Some(c) = &e.connectivity {
                    self.error(
                        None,
                        at("connectivity"),
                        c,
                        "connectivity is only for type dynamic",
                    );
                }
                let ips = e.ips.as_deref().unwrap_or_default();
                if ips.is_empty() {
                    self.error(None, at("ips"), "", "static edge_ips need at least one ip");
                    return None;
                }
                let mut out: Vec<IpAddr> = Vec::with_capacity(ips.len());
                let mut ok = true;
                for (j, text) in ips.iter().enumerate() {
                    let field = format!("apps[{i}].edge_ips.ips[{j}]");
                    match self.static_ip(text, pools) {
                        Err(reason) => {
                            self.error(None, field, text, reason);
                            ok = false;
                        }
                        Ok(ip) if out.contains(&ip) => {
                            self.error(None, field, text, "address listed twice");
                            ok = false;
                        }
                        Ok(ip) => out.push(ip),
                    }
                }
                // IPv4 first, then IPv6, each in the order written.
                out.sort_by_key(|ip| ip.is_ipv6());
                ok.then_some(EdgeIps::Static(out))
            }
            other => {
                self.error(
                    None,
                    at("type"),
                    other,
                    "unknown edge_ips type; expected dynamic or static",
                );
                None
            }
        }
    }

    fn static_ip(&self, text: &str, pools: &Pools) -> Result<IpAddr, String> {
        let ip: IpAddr = text.parse().map_err(|_| "not an IP address".to_string())?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err("an edge address must be a unicast address".to_string());
        }
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Err(format!(
                "an IPv4-mapped IPv6 address is the IPv4 address {v4} to the data path: write {v4}"
            ));
        }
        let family = Family::of(ip);
        match pools.get(family) {
            Pool::Net(net) if !net.contains(&ip) => {
                Err(format!("outside {} {net}", pool_field(family)))
            }
            _ => Ok(ip),
        }
    }

    fn dns_fits_edge_ips(&mut self, i: usize, kind: DnsKind, edge_ips: &EdgeIps, given: bool) {
        let reason = match (kind, edge_ips) {
            (DnsKind::Cname, EdgeIps::Static(_)) => {
                "dns type CNAME goes with dynamic edge_ips, but edge_ips.type is static; \
                 use ADDRESS for static ips"
            }
            (DnsKind::Address, EdgeIps::Dynamic { .. }) if given => {
                "dns type ADDRESS needs static edge_ips, but edge_ips.type is dynamic; \
                 use CNAME for dynamic ips"
            }
            (DnsKind::Address, EdgeIps::Dynamic { .. }) => {
                "dns type ADDRESS needs edge_ips {type: static, ips: [...]}; \
                 without edge_ips the edge is dynamic"
            }
            _ => return,
        };
        self.error(
            Some(ERR_DNS_EDGE_IPS),
            format!("apps[{i}].dns.type"),
            kind.to_string(),
            reason,
        );
    }

    fn origin(
        &mut self,
        i: usize,
        a: &AppFile,
        protocol: Option<(Protocol, PortRange)>,
    ) -> Option<Origin> {
        const ONE_OF: &str = "exactly one of origin_direct and origin_dns must be set";
        match (&a.origin_direct, &a.origin_dns) {
            (None, None) => {
                self.error(
                    Some(ERR_ORIGIN_CHOICE),
                    format!("apps[{i}].origin_direct"),
                    "",
                    format!("{ONE_OF}; neither is"),
                );
                None
            }
            (Some(direct), Some(dns)) => {
                self.error(
                    Some(ERR_ORIGIN_CHOICE),
                    format!("apps[{i}].origin_dns"),
                    &dns.name,
                    format!("{ONE_OF}; both are"),
                );
                // Still check both, so that every problem shows at once.
                self.origin_direct(i, direct, protocol);
                self.origin_dns(i, dns, a.origin_port.as_ref(), protocol);
                None
            }
            (Some(direct), None) => {
                if let Some(port) = &a.origin_port {
                    self.error(
                        None,
                        format!("apps[{i}].origin_port"),
                        origin_port_text(port),
                        "origin_port is only for origin_dns; origin_direct carries its own \
                         ports (tcp://192.0.2.1:22)",
                    );
                }
                self.origin_direct(i, direct, protocol).map(Origin::Direct)
            }
            (None, Some(dns)) => self
                .origin_dns(i, dns, a.origin_port.as_ref(), protocol)
                .map(Origin::Dns),
        }
    }

    fn origin_direct(
        &mut self,
        i: usize,
        list: &[String],
        protocol: Option<(Protocol, PortRange)>,
    ) -> Option<Vec<OriginAddr>> {
        if list.is_empty() {
            self.error(
                Some(ERR_ORIGIN_ADDR),
                format!("apps[{i}].origin_direct"),
                "",
                "origin_direct is empty; list at least one origin such as tcp://192.0.2.1:22",
            );
            return None;
        }
        let mut out: Vec<OriginAddr> = Vec::with_capacity(list.len());
        let mut ok = true;
        for (j, text) in list.iter().enumerate() {
            let field = format!("apps[{i}].origin_direct[{j}]");
            let (scheme, origin) = match parse_origin_direct(text) {
                Ok(parsed) => parsed,
                Err(reason) => {
                    self.error(Some(ERR_ORIGIN_ADDR), field, text, reason);
                    ok = false;
                    continue;
                }
            };
            if let Some((proto, edge_ports)) = protocol {
                if scheme != proto {
                    self.error(
                        Some(ERR_ORIGIN_ADDR),
                        field,
                        text,
                        format!("a {proto} app needs {proto}:// origins, not {scheme}://"),
                    );
                    ok = false;
                    continue;
                }
                if let Err(reason) = same_size(origin.ports, edge_ports) {
                    self.error(None, field, text, reason);
                    ok = false;
                    continue;
                }
            }
            if out.contains(&origin) {
                self.error(Some(ERR_ORIGIN_ADDR), field, text, "origin listed twice");
                ok = false;
                continue;
            }
            out.push(origin);
        }
        ok.then_some(out)
    }

    fn origin_dns(
        &mut self,
        i: usize,
        d: &OriginDnsFile,
        port: Option<&OriginPortFile>,
        protocol: Option<(Protocol, PortRange)>,
    ) -> Option<OriginDns> {
        let at = |name: &str| format!("apps[{i}].origin_dns.{name}");
        let mut ok = true;
        if let Err(reason) = check_dns_name(&d.name, false) {
            self.error(Some(ERR_ORIGIN_DNS), at("name"), &d.name, reason);
            ok = false;
        }
        let family = match d.kind.as_deref().unwrap_or("") {
            "" => Some(OriginFamily::Any),
            "A" => Some(OriginFamily::V4),
            "AAAA" => Some(OriginFamily::V6),
            "SRV" => {
                self.error(
                    Some(ERR_ORIGIN_DNS),
                    at("type"),
                    "SRV",
                    "SRV origins are unsupported; use \"\" (A and AAAA), A or AAAA",
                );
                None
            }
            other => {
                self.error(
                    Some(ERR_ORIGIN_DNS),
                    at("type"),
                    other,
                    "unknown origin_dns type; expected \"\" (A and AAAA), A or AAAA",
                );
                None
            }
        };
        let ttl = match d.ttl {
            None => MIN_ORIGIN_DNS_TTL,
            Some(ttl) if ttl < MIN_ORIGIN_DNS_TTL => {
                self.warn(
                    at("ttl"),
                    ttl.to_string(),
                    format!("raised to {MIN_ORIGIN_DNS_TTL} seconds, Cloudflare's minimum"),
                );
                MIN_ORIGIN_DNS_TTL
            }
            Some(ttl) => ttl,
        };
        let port_field = format!("apps[{i}].origin_port");
        let ports = match port {
            None => {
                self.error(
                    Some(ERR_ORIGIN_DNS),
                    port_field,
                    "",
                    "origin_dns needs origin_port (a port, or \"start-end\")",
                );
                None
            }
            Some(port) => match parse_origin_port(port) {
                Err(reason) => {
                    self.error(
                        Some(ERR_ORIGIN_DNS),
                        port_field,
                        origin_port_text(port),
                        reason,
                    );
                    None
                }
                Ok(ports) => match protocol.map(|(_, edge)| same_size(ports, edge)) {
                    Some(Err(reason)) => {
                        self.error(None, port_field, origin_port_text(port), reason);
                        None
                    }
                    _ => Some(ports),
                },
            },
        };
        let (family, ports) = (family?, ports?);
        ok.then(|| OriginDns {
            name: d.name.clone(),
            ttl,
            family,
            ports,
        })
    }

    fn proxy_protocol(
        &mut self,
        i: usize,
        p: Option<&ProxyProtocolFile>,
        protocol: Option<Protocol>,
    ) -> Option<ProxyProtocol> {
        let field = format!("apps[{i}].proxy_protocol");
        let (value, mode) = match p {
            None => return Some(ProxyProtocol::Off),
            Some(ProxyProtocolFile::Bool(b)) => {
                let mode = if *b {
                    ProxyProtocol::V1
                } else {
                    ProxyProtocol::Off
                };
                (b.to_string(), mode)
            }
            Some(ProxyProtocolFile::Name(name)) => {
                let mode = match name.as_str() {
                    "off" => ProxyProtocol::Off,
                    "v1" => ProxyProtocol::V1,
                    "v2" => ProxyProtocol::V2,
                    "simple" => ProxyProtocol::Simple,
                    _ => {
                        self.error(
                            None,
                            field,
                            name,
                            "unknown proxy_protocol; expected off, v1, v2 or simple",
                        );
                        return None;
                    }
                };
                (name.clone(), mode)
            }
        };
        let refused = match (mode, protocol) {
            (ProxyProtocol::V1, Some(Protocol::Udp)) => {
                "PROXY protocol v1 is TCP only; use v2 or simple on a udp app"
            }
            (ProxyProtocol::Simple, Some(Protocol::Tcp)) => {
                "simple (Simple Proxy Protocol) is UDP only; use v1 or v2 on a tcp app"
            }
            _ => return Some(mode),
        };
        self.error(None, field, value, refused);
        None
    }

    /// `proxy_protocol_udp`: whether the v2 header goes in front of every
    /// datagram; meaningful only on a udp app with `proxy_protocol: v2`.
    fn proxy_protocol_udp(
        &mut self,
        i: usize,
        value: Option<&str>,
        mode: Option<ProxyProtocol>,
        protocol: Option<Protocol>,
    ) -> bool {
        let field = format!("apps[{i}].proxy_protocol_udp");
        let every = match value {
            None => return false,
            Some("first_datagram") => false,
            Some("every_datagram") => true,
            Some(other) => {
                self.error(
                    None,
                    field,
                    other,
                    "expected first_datagram or every_datagram",
                );
                return false;
            }
        };
        // An invalid proxy_protocol or protocol was reported already.
        let (Some(mode), Some(protocol)) = (mode, protocol) else {
            return false;
        };
        if mode != ProxyProtocol::V2 || protocol != Protocol::Udp {
            self.warn(
                field,
                value.unwrap_or_default(),
                "ignored: only for udp apps with proxy_protocol v2",
            );
            return false;
        }
        every
    }

    fn tls(&mut self, i: usize, a: &AppFile, protocol: Option<Protocol>) -> Option<TlsMode> {
        let at = |name: &str| format!("apps[{i}].{name}");
        let mode = match a.tls.as_deref() {
            None | Some("off") => TlsMode::Off,
            Some("flexible") => TlsMode::Flexible,
            Some("full") => TlsMode::Full,
            Some("strict") => TlsMode::Strict,
            Some(other) => {
                self.error(
                    None,
                    at("tls"),
                    other,
                    "unknown tls mode; expected off, flexible, full or strict",
                );
                return None;
            }
        };
        let mut ok = true;
        if let Some(sni) = &a.origin_sni {
            if let Err(reason) = check_dns_name(sni, false) {
                self.error(None, at("origin_sni"), sni, reason);
                ok = false;
            } else if !matches!(mode, TlsMode::Full | TlsMode::Strict) {
                self.warn(
                    at("origin_sni"),
                    sni,
                    "ignored: only used with tls full or strict",
                );
            }
        }
        if let Some(ca) = &a.origin_ca
            && mode != TlsMode::Strict
        {
            self.warn(
                at("origin_ca"),
                ca.display().to_string(),
                "ignored: only used with tls strict",
            );
        }
        if mode == TlsMode::Off {
            for (name, path) in [("tls_cert", &a.tls_cert), ("tls_key", &a.tls_key)] {
                if let Some(path) = path {
                    self.warn(at(name), path.display().to_string(), "ignored: tls is off");
                }
            }
            if !a.tls_sni_certs.is_empty() {
                let count = a.tls_sni_certs.len().to_string();
                self.warn(at("tls_sni_certs"), count, "ignored: tls is off");
            }
            return ok.then_some(mode);
        }
        if protocol == Some(Protocol::Udp) {
            self.error(
                None,
                at("tls"),
                mode.to_string(),
                "TLS is for tcp apps; set tls to off on a udp app",
            );
            ok = false;
        }
        let missing: Vec<&str> = [("tls_cert", &a.tls_cert), ("tls_key", &a.tls_key)]
            .into_iter()
            .filter(|(_, path)| path.is_none())
            .map(|(name, _)| name)
            .collect();
        if !missing.is_empty() {
            self.error(
                None,
                at("tls"),
                mode.to_string(),
                format!(
                    "tls {mode} terminates TLS at the edge and needs tls_cert and tls_key; \
                     missing: {}",
                    missing.join(", ")
                ),
            );
            ok = false;
        }
        ok.then_some(mode)
    }

    // ---- across apps ----

    fn duplicate_ids(&mut self, drafts: &[AppDraft]) {
        let mut first: HashMap<AppId, usize> = HashMap::new();
        for (i, draft) in drafts.iter().enumerate() {
            let Some(id) = draft.id else { continue };
            match first.get(&id) {
                None => {
                    first.insert(id, i);
                }
                Some(&j) => {
                    let reason = if draft.id_generated {
                        format!(
                            "the id generated from protocol and dns.name is the same as \
                             apps[{j}]'s; give one of them an explicit id"
                        )
                    } else {
                        format!("same id as apps[{j}]")
                    };
                    self.error(None, format!("apps[{i}].id"), id.to_string(), reason);
                }
            }
        }
    }

    /// Each app's edge addresses: its static ips, or addresses from the pool.
    /// A dynamic app keeps the address its lease names while that is still
    /// in the pool and not held statically (or by another lease); the others
    /// take, in config order, the first pool host nobody holds. Leases are
    /// honoured before any new address is handed out, so an app added in
    /// front of others does not shift them.
    fn edge_addresses(
        &mut self,
        drafts: &[AppDraft],
        pools: &Pools,
        leases: &Leases,
        reserved: &[IpAddr],
    ) -> Vec<Option<Vec<IpAddr>>> {
        // Static addresses, by the first app that names them.
        let mut statics: HashMap<IpAddr, usize> = HashMap::new();
        for (i, draft) in drafts.iter().enumerate() {
            if let Some(EdgeIps::Static(ips)) = &draft.edge_ips {
                for ip in ips {
                    statics.entry(*ip).or_insert(i);
                }
            }
        }
        let mut used: HashSet<IpAddr> = statics.keys().copied().collect();
        used.extend(reserved.iter().copied());
        // Pass 1: leases still valid. Pass 2: new addresses for the rest.
        let mut leased: Vec<[Option<IpAddr>; 2]> = vec![[None, None]; drafts.len()];
        for (i, draft) in drafts.iter().enumerate() {
            let (Some(EdgeIps::Dynamic { v4, v6, .. }), Some(id)) = (&draft.edge_ips, draft.id)
            else {
                continue;
            };
            let Some(held) = leases.0.get(&id) else {
                continue;
            };
            for (slot, family, wanted) in [(0, Family::V4, *v4), (1, Family::V6, *v6)] {
                let Some(&ip) = held.iter().find(|ip| Family::of(**ip) == family) else {
                    continue;
                };
                if !wanted {
                    continue;
                }
                let in_pool = matches!(pools.get(family), Pool::Net(net) if net.contains(&ip));
                if let (true, Some(&j)) = (in_pool, statics.get(&ip)) {
                    // Taken: a static address may not be one an app holds.
                    let holder = draft.dns.as_ref().map_or("?", |d| d.name.as_str());
                    self.error(
                        None,
                        format!("apps[{j}].edge_ips.ips"),
                        ip.to_string(),
                        format!(
                            "taken: apps[{i}] ({holder}, id {id}) holds it from the pool \
                             (edge address lease); remove that app, or its entry in \
                             edge.address_pool.state_file, to give the address up"
                        ),
                    );
                } else if in_pool && used.insert(ip) {
                    leased[i][slot] = Some(ip);
                } else {
                    let why = if in_pool {
                        "is now the DNS server's (dns_server.listen)"
                    } else {
                        "is outside the address pool now"
                    };
                    self.warn(
                        format!("apps[{i}].edge_ips"),
                        ip.to_string(),
                        format!("the app's leased address {why}; it gets a new one"),
                    );
                }
            }
        }
        let mut all = Vec::with_capacity(drafts.len());
        for (i, draft) in drafts.iter().enumerate() {
            let addrs = match &draft.edge_ips {
                None => None,
                Some(EdgeIps::Static(ips)) => Some(ips.clone()),
                Some(EdgeIps::Dynamic {
                    connectivity,
                    v4,
                    v6,
                }) => {
                    let mut addrs = Vec::new();
                    let mut ok = true;
                    for (slot, family, wanted) in [(0, Family::V4, *v4), (1, Family::V6, *v6)] {
                        if !wanted {
                            continue;
                        }
                        if let Some(ip) = leased[i][slot] {
                            addrs.push(ip);
                            continue;
                        }
                        let field = format!("apps[{i}].edge_ips");
                        match pools.get(family) {
                            Pool::Invalid => ok = false,
                            Pool::Absent => {
                                self.error(
                                    None,
                                    field,
                                    connectivity,
                                    format!(
                                        "dynamic edge_ips with connectivity {connectivity} need \
                                         an {} address, but {} is not configured",
                                        family.name(),
                                        pool_field(family)
                                    ),
                                );
                                ok = false;
                            }
                            Pool::Net(net) => match first_free(net, &used) {
                                Some(ip) => {
                                    used.insert(ip);
                                    addrs.push(ip);
                                }
                                None => {
                                    self.error(
                                        None,
                                        field,
                                        connectivity,
                                        format!(
                                            "{} {net} has no free address left",
                                            pool_field(family)
                                        ),
                                    );
                                    ok = false;
                                }
                            },
                        }
                    }
                    ok.then_some(addrs)
                }
            };
            all.push(addrs);
        }
        all
    }

    fn overlapping_listeners(
        &mut self,
        files: &[AppFile],
        drafts: &[AppDraft],
        edge_addrs: &[Option<Vec<IpAddr>>],
    ) {
        struct Listener<'a> {
            index: usize,
            id: Option<AppId>,
            protocol: Protocol,
            ports: PortRange,
            addrs: &'a [IpAddr],
        }
        let listeners: Vec<Listener> = drafts
            .iter()
            .zip(edge_addrs)
            .enumerate()
            .filter_map(|(index, (draft, addrs))| {
                let (protocol, ports) = draft.protocol?;
                Some(Listener {
                    index,
                    id: draft.id,
                    protocol,
                    ports,
                    addrs: addrs.as_deref()?,
                })
            })
            .collect();
        let name = |l: &Listener| match l.id {
            Some(id) => format!("apps[{}] (id {id})", l.index),
            None => format!("apps[{}]", l.index),
        };
        for (k, later) in listeners.iter().enumerate() {
            for earlier in &listeners[..k] {
                if earlier.protocol != later.protocol {
                    continue;
                }
                let Some(ports) = earlier.ports.intersection(&later.ports) else {
                    continue;
                };
                let shared: Vec<String> = later
                    .addrs
                    .iter()
                    .filter(|ip| earlier.addrs.contains(ip))
                    .map(|ip| ip.to_string())
                    .collect();
                if shared.is_empty() {
                    continue;
                }
                let noun = if ports.len() == 1 { "port" } else { "ports" };
                self.error(
                    None,
                    format!("apps[{}].protocol", later.index),
                    &files[later.index].protocol,
                    format!(
                        "{} and {} both listen on {} {} {noun} {ports}",
                        name(later),
                        name(earlier),
                        later.protocol,
                        shared.join(", "),
                    ),
                );
            }
        }
    }

    // ---- access rules ----

    fn access_rules(&mut self, rules: &[AccessRuleFile], geoip: &GeoIp) -> Vec<AccessRule> {
        let mut out = Vec::new();
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            if let Some(id) = rule.id.as_deref() {
                let fits = (1..=64).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
                if !fits {
                    self.error(
                        None,
                        format!("access_rules[{i}].id"),
                        id,
                        "expected 1 to 64 letters, digits, '-', '_', '.' or ':' \
                         (the id is part of the rule's API path)",
                    );
                } else if let Some(&j) = ids.get(id) {
                    self.error(
                        None,
                        format!("access_rules[{i}].id"),
                        id,
                        format!("same id as access_rules[{j}]"),
                    );
                } else {
                    ids.insert(id, i);
                }
            }
            let mode = match rule.mode.as_str() {
                "block" => Mode::Act(RuleAction::Block),
                "whitelist" | "allow" => Mode::Act(RuleAction::Allow),
                "challenge" | "js_challenge" | "managed_challenge" => {
                    self.warn(
                        format!("access_rules[{i}].mode"),
                        &rule.mode,
                        "ignored: Spectrum honours only allow and block rules; \
                         this rule is left out",
                    );
                    Mode::Ignored
                }
                other => {
                    self.error(
                        None,
                        format!("access_rules[{i}].mode"),
                        other,
                        "unknown mode; expected block, whitelist (or allow), challenge, \
                         js_challenge or managed_challenge",
                    );
                    Mode::Invalid
                }
            };
            // An ignored rule is still checked, but needs no GeoIP database.
            let needs_db = !matches!(mode, Mode::Ignored);
            let target = self.rule_target(i, rule, geoip, needs_db);
            if let (Mode::Act(action), Some(target)) = (mode, target) {
                let id = rule.id.clone().unwrap_or_else(|| {
                    let (mode, target, value) = (
                        rule.mode.as_str(),
                        rule.configuration.target.as_str(),
                        rule.configuration.value.as_str(),
                    );
                    let nth = rules[..i]
                        .iter()
                        .filter(|r| {
                            r.id.is_none()
                                && r.mode == mode
                                && r.configuration.target == target
                                && r.configuration.value.eq_ignore_ascii_case(value)
                        })
                        .count();
                    AccessRule::derived_id(mode, target, value, nth)
                });
                out.push(AccessRule {
                    id,
                    created_on: timestamp(rule.created_on.as_ref()),
                    modified_on: timestamp(rule.modified_on.as_ref()),
                    action,
                    target,
                    notes: rule.notes.clone(),
                });
            }
        }
        out
    }

    fn rule_target(
        &mut self,
        i: usize,
        rule: &AccessRuleFile,
        geoip: &GeoIp,
        needs_db: bool,
    ) -> Option<RuleTarget> {
        let RuleConfigurationFile { target, value } = &rule.configuration;
        let value_field = format!("access_rules[{i}].configuration.value");
        let target_field = format!("access_rules[{i}].configuration.target");
        let parsed = match target.as_str() {
            "ip" => parse_rule_ip(value, Family::V4).map(RuleTarget::Ip),
            "ip6" => parse_rule_ip(value, Family::V6).map(RuleTarget::Ip),
            "ip_range" => parse_network(value).map(|net| {
                if !accepted_rule_prefix(net) {
                    self.warn(
                        value_field.clone(),
                        value,
                        "accepted, but Cloudflare takes only IPv4 /16 and /24 and IPv6 /32, \
                         /48 and /64 ranges",
                    );
                }
                RuleTarget::Range(net)
            }),
            "asn" => parse_asn(value).map(RuleTarget::Asn),
            "country" => parse_country(value).map(RuleTarget::Country),
            other => {
                self.error(
                    None,
                    target_field,
                    other,
                    "unknown target; expected ip, ip6, ip_range, asn or country",
                );
                return None;
            }
        };
        let target_value = match parsed {
            Ok(t) => t,
            Err(reason) => {
                self.error(None, value_field, value, reason);
                return None;
            }
        };
        let missing_db = match target_value {
            RuleTarget::Asn(_) if geoip.asn_db.is_none() => Some("edge.geoip.asn_db"),
            RuleTarget::Country(_) if geoip.country_db.is_none() => Some("edge.geoip.country_db"),
            _ => None,
        };
        if let (Some(setting), true) = (missing_db, needs_db) {
            let rule_name = match &rule.id {
                Some(id) => format!("access_rules[{i}] (id {id:?})"),
                None => format!("access_rules[{i}]"),
            };
            self.error(
                None,
                target_field,
                target.as_str(),
                format!("{rule_name}: {target} rules need {setting}, which is not set"),
            );
            return None;
        }
        Some(target_value)
    }
}

// ---- parsers: each returns the value or the reason it is refused ----

/// A week: longer idle flows are surely dead.
const MAX_FLOW_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// `ip`, `ip:port` or `[ipv6]:port`; port 53 when absent.
fn parse_resolver(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(std::net::SocketAddr::new(ip, 53)),
        Err(_) => Err("expected IP, IP:PORT or [IPv6]:PORT of a DNS server".to_string()),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {text:?} is not a number"));
    }
    // Too many digits for u64 is certainly above 65535 as well.
    let n: u64 = text.parse().unwrap_or(u64::MAX);
    match u16::try_from(n) {
        Ok(0) => Err("port 0 is not allowed".to_string()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("port {text} is above 65535")),
    }
}

fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (parse_port(start)?, parse_port(end)?),
        None => {
            let port = parse_port(text)?;
            (port, port)
        }
    };
    if start > end {
        return Err(format!(
            "reversed port range {start}-{end}: the start is above the end"
        ));
    }
    Ok(PortRange { start, end })
}

fn parse_scheme(scheme: &str) -> Result<Protocol, String> {
    match scheme {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("unknown protocol {other:?}; expected tcp or udp")),
    }
}

/// `tcp/22`, `udp/53`, `tcp/1000-2000`.
fn parse_protocol(text: &str) -> Result<(Protocol, PortRange), String> {
    let Some((scheme, ports)) = text.split_once('/') else {
        return Err("expected tcp/PORT, udp/PORT, tcp/START-END or udp/START-END".to_string());
    };
    Ok((parse_scheme(scheme)?, parse_port_range(ports)?))
}

/// `tcp://192.0.2.1:22`, `udp://[2001:db8::1]:53`, `tcp://192.0.2.1:3000-4000`.
fn parse_origin_direct(text: &str) -> Result<(Protocol, OriginAddr), String> {
    const SHAPE: &str = "expected SCHEME://IP:PORT, SCHEME://[IPv6]:PORT or a START-END port range";
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(SHAPE.to_string());
    };
    let scheme = parse_scheme(scheme)?;
    let (ip, ports) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("missing ']' after the IPv6 address; {SHAPE}"))?;
        let ports = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing :PORT after ']'; {SHAPE}"))?;
        let ip: std::net::Ipv6Addr = host
            .parse()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        (IpAddr::V6(ip), ports)
    } else {
        let (host, ports) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("missing :PORT; {SHAPE}"))?;
        if host.contains(':') {
            return Err(format!(
                "an IPv6 origin goes in brackets: {}://[{host}]:{ports}",
                scheme
            ));
        }
        let ip: std::net::Ipv4Addr = host
            .parse()
            .map_err(|_| format!("{host:?} is not an IP address; use origin_dns for a hostname"))?;
        (IpAddr::V4(ip), ports)
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("{ip} is not a unicast address"));
    }
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Err(format!("{ip} is an IPv4-mapped address: write {v4}"));
    }
    let ports = parse_port_range(ports)?;
    Ok((scheme, OriginAddr { ip, ports }))
}

fn parse_origin_port(port: &OriginPortFile) -> Result<PortRange, String> {
    match port {
        OriginPortFile::Number(n) => match u16::try_from(*n) {
            Ok(p) if p > 0 => Ok(PortRange::single(p)),
            _ => Err(format!("port {n} is outside 1-65535")),
        },
        OriginPortFile::Range(text) => parse_port_range(text),
    }
}

fn origin_port_text(port: &OriginPortFile) -> String {
    match port {
        OriginPortFile::Number(n) => n.to_string(),
        OriginPortFile::Range(text) => text.clone(),
    }
}

/// Origin ranges map onto edge ranges port by port, so sizes must agree.
fn same_size(origin: PortRange, edge: PortRange) -> Result<(), String> {
    if origin.len() == edge.len() {
        return Ok(());
    }
    let count = |n: u32| {
        if n == 1 {
            "1 port".to_string()
        } else {
            format!("{n} ports")
        }
    };
    Err(format!(
        "origin ports {origin} are {} but edge ports {edge} are {}; the two ranges must be \
         the same size",
        count(origin.len()),
        count(edge.len())
    ))
}

/// A CIDR network without host bits set.
fn parse_network(text: &str) -> Result<IpNet, String> {
    match text.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(format!("host bits are set; the network is {}", net.trunc())),
        Err(_) if text.parse::<IpAddr>().is_ok() => {
            Err("a single address; a network needs a prefix length such as /24".to_string())
        }
        Err(_) => Err("not a network in CIDR notation (e.g. 198.51.100.0/24)".to_string()),
    }
}

fn accepted_rule_prefix(net: IpNet) -> bool {
    match net {
        IpNet::V4(n) => matches!(n.prefix_len(), 16 | 24),
        IpNet::V6(n) => matches!(n.prefix_len(), 32 | 48 | 64),
    }
}

fn parse_rule_ip(text: &str, family: Family) -> Result<IpAddr, String> {
    match text.parse::<IpAddr>() {
        Ok(ip) if Family::of(ip) == family => Ok(ip),
        Ok(_) => Err(match family {
            Family::V4 => "an IPv6 address; use target ip6".to_string(),
            Family::V6 => "an IPv4 address; use target ip".to_string(),
        }),
        Err(_) if text.contains('/') => Err("a network; use target ip_range".to_string()),
        Err(_) => Err(format!("not an {} address", family.name())),
    }
}

/// `AS13335` or `13335` (the `AS` in any case).
fn parse_asn(text: &str) -> Result<u32, String> {
    let digits = match text.get(..2) {
        Some(prefix) if prefix.eq_ignore_ascii_case("as") => &text[2..],
        _ => text,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an AS number; expected AS13335 or 13335".to_string());
    }
    match digits.parse::<u32>() {
        Ok(asn) if asn > 0 => Ok(asn),
        _ => Err("AS number outside 1-4294967295".to_string()),
    }
}

/// ISO 3166-1 alpha-2 (any case), or `T1` (Tor); `XX` (unknown) is two letters.
fn parse_country(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    let b = upper.as_bytes();
    if upper == "T1" || (b.len() == 2 && b.iter().all(u8::is_ascii_uppercase)) {
        Ok(upper)
    } else {
        Err("not a country code; expected two letters (ISO 3166-1 alpha-2), T1 or XX".to_string())
    }
}

/// A DNS name: labels of 1-63 letters, digits and '-', not starting or ending
/// with '-', 253 characters at most, an optional trailing dot; `*` as the
/// first label when `wildcard`.
/// A DNS name as the server compares it: lower case, no trailing dot.
pub(crate) fn canonical_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether canonical `name` is `zone` or below it.
pub(crate) fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|head| head.ends_with('.'))
}

fn check_dns_name(name: &str, wildcard: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".to_string());
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.len() > 253 {
        return Err(format!(
            "name is {} characters long; at most 253",
            bare.len()
        ));
    }
    for (k, label) in bare.split('.').enumerate() {
        if k == 0 && label == "*" {
            if wildcard {
                continue;
            }
            return Err("a wildcard is not allowed here".to_string());
        }
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".to_string());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "label {label:?} may hold only letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// Linux's rules for a network interface name (`dev_valid_name`).
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err("an interface name is 1-15 bytes long".to_string());
    }
    if name == "." || name == ".." {
        return Err("not a valid interface name".to_string());
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err("an interface name may not hold '/', ':' or whitespace".to_string());
    }
    Ok(())
}

/// The first pool address that is free. In an IPv6 pool the all-zero host
/// (the subnet-router anycast address) is skipped, as routers answer it.
fn first_free(pool: IpNet, used: &HashSet<IpAddr>) -> Option<IpAddr> {
    let anycast = match pool {
        IpNet::V6(net) if net.prefix_len() < 127 => Some(IpAddr::V6(net.network())),
        _ => None,
    };
    pool.hosts()
        .find(|ip| Some(*ip) != anycast && !used.contains(ip))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use serde_json::{Value, json};

    use super::super::model::fnv1a_128;
    use super::*;

    fn config(apps: Vec<Value>) -> Value {
        json!({
            "edge": {
                "interfaces": ["eth0"],
                "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"},
                "geoip": {"country_db": "/geo/country.mmdb", "asn_db": "/geo/asn.mmdb"}
            },
            "apps": apps,
        })
    }

    fn tcp_app() -> Value {
        json!({
            "protocol": "tcp/22",
            "dns": {"type": "CNAME", "name": "ssh.example.com"},
            "origin_direct": ["tcp://192.0.2.1:22"]
        })
    }

    fn udp_app() -> Value {
        json!({
            "protocol": "udp/53",
            "dns": {"type": "CNAME", "name": "dns.example.com"},
            "origin_direct": ["udp://192.0.2.53:53"]
        })
    }

    fn with(mut value: Value, key: &str, field: Value) -> Value {
        value[key] = field;
        value
    }

    fn without(mut value: Value, key: &str) -> Value {
        value.as_object_mut().unwrap().remove(key);
        value
    }

    fn run(file: Value) -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
        let file: ConfigFile = serde_json::from_value(file).expect("schema");
        validate(&file)
    }

    fn accepted(file: Value) -> (Config, Vec<Warning>) {
        match run(file) {
            Ok(ok) => ok,
            Err(errors) => panic!("refused: {errors:#?}"),
        }
    }

    fn refused(file: Value) -> Vec<ConfigError> {
        match run(file) {
            Ok((config, _)) => panic!("accepted: {config:#?}"),
            Err(errors) => errors,
        }
    }

    /// The one error a config yields, checked for code, field, value and
    /// a piece of the reason, and that its Display shows all of them.
    fn only_error(file: Value, code: Option<u32>, field: &str, value: &str, reason: &str) {
        let errors = refused(file);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(
            (e.code, e.field.as_str(), e.value.as_str()),
            (code, field, value),
            "{e}"
        );
        assert!(
            e.reason.contains(reason),
            "reason {:?} lacks {reason:?}",
            e.reason
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{field}: {value:?}: ")),
            "{shown}"
        );
        if let Some(code) = code {
            assert!(shown.contains(&format!("error {code}: ")), "{shown}");
        }
        assert!(!shown.contains('\n'), "{shown}");
    }

    #[test]
    fn both_origin_kinds_ranges_and_v6_origin() {
        let direct = json!({
            "id": "0123456789ABCDEF0123456789abcdef",
            "protocol": "tcp/1000-2000",
            "dns": {"type": "ADDRESS", "name": "range.example.com"},
            "origin_direct": ["tcp://192.0.2.1:3000-4000", "tcp://[2001:db8::1]:3000-4000"],
            "edge_ips": {"type": "static", "ips": ["2001:db8:e::7", "198.51.100.7"]},
            "proxy_protocol": "v2",
            "ip_firewall": true,
            "traffic_type": "direct",
            "argo_smart_routing": false
        });
        let dns = json!({
            "protocol": "udp/5000-5009",
            "dns": {"type": "CNAME", "name": "*.games.example.com."},
            "origin_dns": {"name": "origin.example.com", "ttl": 1200, "type": "AAAA"},
            "origin_port": "6000-6009",
            "proxy_protocol": "simple",
            "edge_ips": {"type": "dynamic", "connectivity": "ipv6"}
        });
        let (config, warnings) = accepted(config(vec![direct, dns]));
        assert!(warnings.is_empty(), "{warnings:?}");
        let a = &config.apps[0];
        assert_eq!(a.id.to_string(), "0123456789abcdef0123456789abcdef");
        assert_eq!(
            (a.protocol, a.edge_ports),
            (Protocol::Tcp, PortRange::new(1000, 2000))
        );
        assert_eq!(a.dns.kind, DnsKind::Address);
        assert_eq!(
            a.edge_addrs,
            [
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
                "2001:db8:e::7".parse::<IpAddr>().unwrap()
            ]
        );
        let origin_ports = PortRange::new(3000, 4000);
        assert_eq!(
            a.origin,
            Origin::Direct(vec![
                OriginAddr {
                    ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                    ports: origin_ports
                },
                OriginAddr {
                    ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                    ports: origin_ports
                },
            ])
        );
        assert_eq!(a.proxy_protocol, ProxyProtocol::V2);
        assert_eq!(a.tls, TlsMode::Off);
        assert!(a.ip_firewall);
        assert_eq!(a.origin_port_for(origin_ports, 1000), Some(3000));
        assert_eq!(a.origin_port_for(origin_ports, 2000), Some(4000));
        assert_eq!(a.origin_port_for(origin_ports, 2001), None);

        let b = &config.apps[1];
        assert_eq!(
            (b.protocol, b.edge_ports),
            (Protocol::Udp, PortRange::new(5000, 5009))
        );
        assert_eq!(
            b.origin,
            Origin::Dns(OriginDns {
                name: "origin.example.com".into(),
                ttl: 1200,
                family: OriginFamily::V6,
                ports: PortRange::new(6000, 6009),
            })
        );
        assert_eq!(b.proxy_protocol, ProxyProtocol::Simple);
        // The first IPv6 pool host after the subnet-router anycast address.
        assert_eq!(b.edge_addrs, ["2001:db8:e::1".parse::<IpAddr>().unwrap()]);
        assert!(!b.ip_firewall);
    }

    #[test]
    fn defaults() {
        let (config, warnings) = accepted(config(vec![tcp_app()]));
        assert!(warnings.is_empty());
        let a = &config.apps[0];
        assert_eq!(a.proxy_protocol, ProxyProtocol::Off);
        assert_eq!(a.tls, TlsMode::Off);
        assert!(a.fast_path());
        // No edge_ips: dynamic, both families.
        assert_eq!(
            a.edge_addrs,
            [
                "198.51.100.1".parse::<IpAddr>().unwrap(),
                "2001:db8:e::1".parse().unwrap()
            ]
        );
        assert_eq!(config.edge.xdp_mode, None);
        assert!(config.access_rules.is_empty());
    }

    #[test]
    fn code_11000_neither_and_both() {
        only_error(
            config(vec![without(tcp_app(), "origin_direct")]),
            Some(11000),
            "apps[0].origin_direct",
            "",
            "neither",
        );
        let both = with(
            tcp_app(),
            "origin_dns",
            json!({"name": "origin.example.com"}),
        );
        let both = with(both, "origin_port", json!(22));
        only_error(
            config(vec![both]),
            Some(11000),
            "apps[0].origin_dns",
            "origin.example.com",
            "both",
        );
    }

    fn dns_app(origin_dns: Value, origin_port: Option<Value>) -> Value {
        let app = with(
            without(tcp_app(), "origin_direct"),
            "origin_dns",
            origin_dns,
        );
        match origin_port {
            Some(port) => with(app, "origin_port", port),
            None => app,
        }
    }

    #[test]
    fn code_11001_bad_origin_dns() {
        let port = Some(json!(22));
        for (name, reason) in [
            ("", "empty"),
            ("bad_name.example.com", "only letters"),
            ("-x.example.com", "'-'"),
        ] {
            only_error(
                config(vec![dns_app(json!({"name": name}), port.clone())]),
                Some(11001),
                "apps[0].origin_dns.name",
                name,
                reason,
            );
        }
        only_error(
            config(vec![dns_app(
                json!({"name": "o.example.com", "type": "SRV"}),
                port.clone(),
            )]),
            Some(11001),
            "apps[0].origin_dns.type",
            "SRV",
            "unsupported",
        );
        only_error(
            config(vec![dns_app(
                json!({"name": "o.example.com", "type": "MX"}),
                port.clone(),
            )]),
            Some(11001),
            "apps[0].origin_dns.type",
            "MX",
            "unknown",
        );
        only_error(
            config(vec![dns_app(json!({"name": "o.example.com"}), None)]),
            Some(11001),
            "apps[0].origin_port",
            "",
            "needs origin_port",
        );
        only_error(
            config(vec![dns_app(
                json!({"name": "o.example.com"}),
                Some(json!(70000)),
            )]),
            Some(11001),
            "apps[0].origin_port",
            "70000",
            "outside 1-65535",
        );
    }

    #[test]
    fn origin_port_with_origin_direct_is_refused() {
        only_error(
            config(vec![with(tcp_app(), "origin_port", json!("22"))]),
            None,
            "apps[0].origin_port",
            "22",
            "origin_direct carries its own ports",
        );
    }

    #[test]
    fn code_11002_bad_origin_address() {
        for (origin, reason) in [
            ("192.0.2.1:22", "expected SCHEME://"),
            ("sctp://192.0.2.1:22", "unknown protocol \"sctp\""),
            (
                "udp://192.0.2.1:22",
                "a tcp app needs tcp:// origins, not udp://",
            ),
            ("tcp://2001:db8::1:22", "in brackets"),
            ("tcp://[2001:db8::1]", "missing :PORT"),
            ("tcp://[192.0.2.1]:22", "not an IPv6 address"),
            ("tcp://192.0.2.1", "missing :PORT"),
            ("tcp://origin.example.com:22", "use origin_dns"),
            ("tcp://192.0.2.300:22", "not an IP address"),
            ("tcp://192.0.2.1:0", "port 0"),
            ("tcp://192.0.2.1:65536", "above 65535"),
            ("tcp://192.0.2.1:x", "not a number"),
            ("tcp://0.0.0.0:22", "not a unicast"),
        ] {
            only_error(
                config(vec![with(tcp_app(), "origin_direct", json!([origin]))]),
                Some(11002),
                "apps[0].origin_direct[0]",
                origin,
                reason,
            );
        }
        let reversed = with(tcp_app(), "protocol", json!("tcp/10-20"));
        only_error(
            config(vec![with(
                reversed,
                "origin_direct",
                json!(["tcp://192.0.2.1:30-20"]),
            )]),
            Some(11002),
            "apps[0].origin_direct[0]",
            "tcp://192.0.2.1:30-20",
            "reversed",
        );
        only_error(
            config(vec![with(tcp_app(), "origin_direct", json!([]))]),
            Some(11002),
            "apps[0].origin_direct",
            "",
            "empty",
        );
        // Each entry is checked, and the index names the bad one.
        only_error(
            config(vec![with(
                tcp_app(),
                "origin_direct",
                json!(["tcp://192.0.2.1:22", "tcp://[2001:db8::1]:22x"]),
            )]),
            Some(11002),
            "apps[0].origin_direct[1]",
            "tcp://[2001:db8::1]:22x",
            "not a number",
        );
    }

    #[test]
    fn code_11004_dns_type_against_edge_ips() {
        let cname_static = with(
            tcp_app(),
            "edge_ips",
            json!({"type": "static", "ips": ["198.51.100.7"]}),
        );
        only_error(
            config(vec![cname_static]),
            Some(11004),
            "apps[0].dns.type",
            "CNAME",
            "static",
        );
        let address = with(
            tcp_app(),
            "dns",
            json!({"type": "ADDRESS", "name": "ssh.example.com"}),
        );
        only_error(
            config(vec![address.clone()]),
            Some(11004),
            "apps[0].dns.type",
            "ADDRESS",
            "without edge_ips",
        );
        only_error(
            config(vec![with(address, "edge_ips", json!({"type": "dynamic"}))]),
            Some(11004),
            "apps[0].dns.type",
            "ADDRESS",
            "dynamic",
        );
    }

    #[test]
    fn origin_range_size_must_match_edge_range() {
        let app = with(tcp_app(), "protocol", json!("tcp/1000-2000"));
        only_error(
            config(vec![with(
                app.clone(),
                "origin_direct",
                json!(["tcp://192.0.2.1:3000"]),
            )]),
            None,
            "apps[0].origin_direct[0]",
            "tcp://192.0.2.1:3000",
            "origin ports 3000 are 1 port but edge ports 1000-2000 are 1001 ports",
        );
        // Every entry is checked: the second one is short.
        let errors = refused(config(vec![with(
            app.clone(),
            "origin_direct",
            json!(["tcp://192.0.2.1:3000-4000", "tcp://192.0.2.2:3000-3999"]),
        )]));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "apps[0].origin_direct[1]");
        assert!(errors[0].reason.contains("1000 ports") && errors[0].reason.contains("1001 ports"));
        // origin_port with origin_dns is held to the same rule.
        let dns = with(
            without(app, "origin_direct"),
            "origin_dns",
            json!({"name": "o.example.com"}),
        );
        only_error(
            config(vec![with(dns, "origin_port", json!("3000-3010"))]),
            None,
            "apps[0].origin_port",
            "3000-3010",
            "11 ports but edge ports 1000-2000 are 1001 ports",
        );
    }

    #[test]
    fn malformed_protocols() {
        for (protocol, reason) in [
            ("tcp/2000-1000", "reversed port range 2000-1000"),
            ("tcp/0", "port 0 is not allowed"),
            ("udp/65536", "port 65536 is above 65535"),
            ("tcp/1-99999999999999999999999", "above 65535"),
            ("sctp/22", "unknown protocol \"sctp\""),
            ("tcp22", "expected tcp/PORT"),
            ("tcp/", "not a number"),
            ("tcp/-5", "not a number"),
            ("tcp/+5", "not a number"),
        ] {
            // The origin is not checked against a protocol that did not parse.
            only_error(
                config(vec![with(tcp_app(), "protocol", json!(protocol))]),
                None,
                "apps[0].protocol",
                protocol,
                reason,
            );
        }
    }

    #[test]
    fn overlapping_listeners_name_both_apps() {
        let first = json!({
            "id": "11111111111111111111111111111111",
            "protocol": "tcp/1000-2000",
            "dns": {"type": "ADDRESS", "name": "a.example.com"},
            "origin_direct": ["tcp://192.0.2.1:1000-2000"],
            "edge_ips": {"type": "static", "ips": ["198.51.100.7"]}
        });
        let second = json!({
            "id": "22222222222222222222222222222222",
            "protocol": "tcp/1500-2500",
            "dns": {"type": "ADDRESS", "name": "b.example.com"},
            "origin_direct": ["tcp://192.0.2.2:1500-2500"],
            "edge_ips": {"type": "static", "ips": ["198.51.100.8", "198.51.100.7"]}
        });
        only_error(
            config(vec![first.clone(), second.clone()]),
            None,
            "apps[1].protocol",
            "tcp/1500-2500",
            "apps[1] (id 22222222222222222222222222222222) and \
             apps[0] (id 11111111111111111111111111111111) both listen on tcp 198.51.100.7 \
             ports 1500-2000",
        );
        // The same ports over UDP are another listener.
        let udp = with(
            with(second.clone(), "protocol", json!("udp/1500-2500")),
            "origin_direct",
            json!(["udp://192.0.2.2:1500-2500"]),
        );
        accepted(config(vec![first.clone(), udp]));
        // Adjacent ranges do not overlap.
        let adjacent = with(
            with(second, "protocol", json!("tcp/2001-2500")),
            "origin_direct",
            json!(["tcp://192.0.2.2:2001-2500"]),
        );
        accepted(config(vec![first, adjacent]));
    }

    #[test]
    fn ttl_raised_with_warning() {
        let (config_, warnings) = accepted(config(vec![dns_app(
            json!({"name": "o.example.com", "ttl": 60}),
            Some(json!(22)),
        )]));
        let Origin::Dns(dns) = &config_.apps[0].origin else {
            panic!("not a dns origin")
        };
        assert_eq!(dns.ttl, 600);
        assert_eq!(dns.family, OriginFamily::Any);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].field, "apps[0].origin_dns.ttl");
        assert_eq!(warnings[0].value, "60");
        assert!(
            warnings[0].to_string().contains("raised to 600"),
            "{}",
            warnings[0]
        );

        let (config_, warnings) = accepted(config(vec![dns_app(
            json!({"name": "o.example.com", "type": "A"}),
            Some(json!("22")),
        )]));
        let Origin::Dns(dns) = &config_.apps[0].origin else {
            panic!("not a dns origin")
        };
        assert_eq!((dns.ttl, dns.family), (600, OriginFamily::V4));
        assert!(warnings.is_empty());
    }

    fn rules(rules: Value) -> Value {
        let mut file = config(vec![]);
        file["access_rules"] = rules;
        file
    }

    fn rule(mode: &str, target: &str, value: &str) -> Value {
        json!({"mode": mode, "configuration": {"target": target, "value": value}})
    }

    #[test]
    fn access_rule_modes() {
        let (config_, warnings) = accepted(rules(json!([
            {"id": "r1", "mode": "block", "configuration": {"target": "ip", "value": "198.51.100.9"}, "notes": "bad actor"},
            rule("whitelist", "ip6", "2001:db8::9"),
            rule("allow", "country", "ch"),
            rule("challenge", "ip", "192.0.2.1"),
            rule("js_challenge", "asn", "AS13335"),
            rule("managed_challenge", "country", "FR"),
        ])));
        let got: Vec<(RuleAction, RuleTarget)> = config_
            .access_rules
            .iter()
            .map(|r| (r.action, r.target.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    RuleAction::Block,
                    RuleTarget::Ip("198.51.100.9".parse().unwrap())
                ),
                (
                    RuleAction::Allow,
                    RuleTarget::Ip("2001:db8::9".parse().unwrap())
                ),
                (RuleAction::Allow, RuleTarget::Country("CH".into())),
            ]
        );
        assert_eq!(config_.access_rules[0].id, "r1");
        assert_eq!(config_.access_rules[0].notes.as_deref(), Some("bad actor"));
        let warned: Vec<(&str, &str)> = warnings
            .iter()
            .map(|w| (w.field.as_str(), w.value.as_str()))
            .collect();
        assert_eq!(
            warned,
            [
                ("access_rules[3].mode", "challenge"),
                ("access_rules[4].mode", "js_challenge"),
                ("access_rules[5].mode", "managed_challenge"),
            ]
        );
        assert!(warnings[0].message.contains("only allow and block"));

        only_error(
            rules(json!([rule("deny", "ip", "192.0.2.1")])),
            None,
            "access_rules[0].mode",
            "deny",
            "unknown mode",
        );
        only_error(
            rules(json!([rule("block", "ip4", "192.0.2.1")])),
            None,
            "access_rules[0].configuration.target",
            "ip4",
            "unknown target",
        );
    }

    fn rule_target(target: &str, value: &str) -> Result<RuleTarget, Vec<ConfigError>> {
        run(rules(json!([rule("block", target, value)])))
            .map(|(config, _)| config.access_rules[0].target.clone())
    }

    fn rule_value_error(target: &str, value: &str, reason: &str) {
        only_error(
            rules(json!([rule("block", target, value)])),
            None,
            "access_rules[0].configuration.value",
            value,
            reason,
        );
    }

    #[test]
    fn ip_and_ip6_targets() {
        assert_eq!(
            rule_target("ip", "192.0.2.1"),
            Ok(RuleTarget::Ip("192.0.2.1".parse().unwrap()))
        );
        assert_eq!(
            rule_target("ip6", "2001:db8::1"),
            Ok(RuleTarget::Ip("2001:db8::1".parse().unwrap()))
        );
        rule_value_error("ip", "2001:db8::1", "use target ip6");
        rule_value_error("ip6", "192.0.2.1", "use target ip");
        rule_value_error("ip", "192.0.2.0/24", "use target ip_range");
        rule_value_error("ip", "example.com", "not an IPv4 address");
    }

    #[test]
    fn ip_range_targets() {
        for (value, warned) in [
            ("198.51.0.0/16", false),
            ("198.51.100.0/24", false),
            ("2001:db8::/32", false),
            ("2001:db8:1::/48", false),
            ("2001:db8:1:2::/64", false),
            ("198.51.100.0/25", true),
            ("2001:db8::/56", true),
        ] {
            let (config_, warnings) = accepted(rules(json!([rule("block", "ip_range", value)])));
            assert_eq!(
                config_.access_rules[0].target,
                RuleTarget::Range(value.parse().unwrap())
            );
            assert_eq!(warnings.len(), usize::from(warned), "{value}: {warnings:?}");
            if warned {
                assert_eq!(warnings[0].field, "access_rules[0].configuration.value");
                assert!(warnings[0].message.contains("/16 and /24"));
            }
        }
        rule_value_error(
            "ip_range",
            "198.51.100.1/24",
            "host bits are set; the network is 198.51.100.0/24",
        );
        rule_value_error("ip_range", "198.51.100.1", "needs a prefix length");
        rule_value_error("ip_range", "198.51.100.0/33", "not a network");
    }

    #[test]
    fn asn_and_country_targets() {
        assert_eq!(rule_target("asn", "AS13335"), Ok(RuleTarget::Asn(13335)));
        assert_eq!(rule_target("asn", "as13335"), Ok(RuleTarget::Asn(13335)));
        assert_eq!(rule_target("asn", "13335"), Ok(RuleTarget::Asn(13335)));
        assert_eq!(
            rule_target("asn", "AS4294967295"),
            Ok(RuleTarget::Asn(u32::MAX))
        );
        rule_value_error("asn", "AS0", "outside 1-4294967295");
        rule_value_error("asn", "AS4294967296", "outside 1-4294967295");
        rule_value_error("asn", "AS", "not an AS number");
        rule_value_error("asn", "ASN13335", "not an AS number");
        rule_value_error("asn", "é13335", "not an AS number");
        assert_eq!(
            rule_target("country", "US"),
            Ok(RuleTarget::Country("US".into()))
        );
        assert_eq!(
            rule_target("country", "de"),
            Ok(RuleTarget::Country("DE".into()))
        );
        assert_eq!(
            rule_target("country", "T1"),
            Ok(RuleTarget::Country("T1".into()))
        );
        assert_eq!(
            rule_target("country", "XX"),
            Ok(RuleTarget::Country("XX".into()))
        );
        rule_value_error("country", "USA", "not a country code");
        rule_value_error("country", "U1", "not a country code");
        rule_value_error("country", "", "not a country code");
    }

    #[test]
    fn geo_rules_need_their_database() {
        let mut file = rules(json!([
            {"id": "no-asn", "mode": "block", "configuration": {"target": "asn", "value": "AS64500"}},
            rule("whitelist", "country", "CH"),
            // Left out with a warning, so it needs no database.
            rule("challenge", "asn", "AS64501"),
        ]));
        file["edge"]["geoip"] = json!({});
        let errors = refused(file);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "access_rules[0].configuration.target: \"asn\": access_rules[0] (id \"no-asn\"): \
                 asn rules need edge.geoip.asn_db, which is not set",
                "access_rules[1].configuration.target: \"country\": access_rules[1]: country \
                 rules need edge.geoip.country_db, which is not set",
            ]
        );
    }

    #[test]
    fn datapath_is_global_with_a_per_app_override_and_auto_splits_by_protocol() {
        let tls_app = with(
            with(
                with(tcp_app(), "tls", json!("flexible")),
                "tls_cert",
                json!("/c.pem"),
            ),
            "tls_key",
            json!("/k.pem"),
        );
        let apps = |edge_mode: Option<&str>, own: Option<&str>| {
            let mut file = config(vec![
                with(tcp_app(), "protocol", json!("tcp/2222")),
                udp_app(),
                tls_app.clone(),
            ]);
            if let Some(mode) = edge_mode {
                file["edge"]["datapath"] = json!(mode);
            }
            if let Some(mode) = own {
                file["apps"][1]["datapath"] = json!(mode);
            }
            let (config_, _) = accepted(file);
            config_
                .apps
                .iter()
                .map(|a| a.nat_at_tc)
                .collect::<Vec<bool>>()
        };
        assert_eq!(apps(None, None), [false, false, false], "xdp by default");
        assert_eq!(apps(Some("xdp"), None), [false, false, false]);
        assert_eq!(apps(Some("tc"), None), [true, true, true]);
        assert_eq!(
            apps(Some("auto"), None),
            [true, false, true],
            "UDP stays in XDP"
        );
        assert_eq!(
            apps(Some("auto"), Some("tc")),
            [true, true, true],
            "per app"
        );
        assert_eq!(apps(Some("tc"), Some("xdp")), [true, false, true]);
        // The TLS app is not fast path: its flag means nothing in the maps.
        let mut file = config(vec![tls_app.clone()]);
        file["edge"]["datapath"] = json!("tc");
        let (config_, _) = accepted(file);
        assert!(!config_.needs_tc());
        only_error(
            with(
                config(vec![]),
                "edge",
                json!({"interfaces": ["eth0"], "datapath": "ebpf"}),
            ),
            None,
            "edge.datapath",
            "ebpf",
            "expected xdp, tc or auto",
        );
        only_error(
            config(vec![with(tcp_app(), "datapath", json!("TC"))]),
            None,
            "apps[0].datapath",
            "TC",
            "expected xdp, tc or auto",
        );
    }

    #[test]
    fn rule_ids_must_fit_in_a_path() {
        for id in ["", "a/b", "has space", &"x".repeat(65)] {
            let rule = json!({"id": id, "mode": "block",
                              "configuration": {"target": "ip", "value": "192.0.2.1"}});
            let mut file = config(vec![]);
            file["access_rules"] = json!([rule]);
            only_error(file, None, "access_rules[0].id", id, "1 to 64 letters");
        }
    }

    #[test]
    fn files_a_tls_mode_ignores_stay_out_of_the_model() {
        let app = with(
            with(tcp_app(), "tls_key", json!("/missing/k.pem")),
            "origin_ca",
            json!("/missing/ca.pem"),
        );
        let (config_, warnings) = accepted(config(vec![app]));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(config_.apps[0].tls_key, None);
        assert_eq!(config_.apps[0].origin_ca, None);
        let checked = config_.check_files();
        assert!(
            !checked.iter().any(|e| e.field.starts_with("apps[0]")),
            "nothing ignored is checked: {checked:?}"
        );
    }

    #[test]
    fn generated_ids_are_stable() {
        let (first, _) = accepted(config(vec![tcp_app(), udp_app()]));
        let (again, _) = accepted(config(vec![udp_app(), tcp_app()]));
        assert_eq!(first.apps[0].id, again.apps[1].id);
        assert_eq!(first.apps[1].id, again.apps[0].id);
        assert_ne!(first.apps[0].id, first.apps[1].id);
        // Pinned: changing how ids are derived would rename every running app.
        assert_eq!(
            first.apps[0].id,
            AppId::generated(Protocol::Tcp, PortRange::single(22), "ssh.example.com")
        );
        assert_eq!(
            first.apps[0].id.to_string(),
            format!("{:032x}", fnv1a_128(b"tcp/22|ssh.example.com"))
        );
        assert_eq!(
            first.apps[0].id.to_string(),
            "0f7c98d536c6e57d6b016698cb91d5d8"
        );
        // Two apps that would get the same id.
        let twin = with(tcp_app(), "origin_direct", json!(["tcp://192.0.2.2:22"]));
        let twin = with(
            twin,
            "edge_ips",
            json!({"type": "dynamic", "connectivity": "ipv4"}),
        );
        let errors = refused(config(vec![tcp_app(), twin]));
        assert_eq!(errors[0].field, "apps[1].id");
        assert!(
            errors[0].reason.contains("give one of them an explicit id"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn explicit_ids() {
        only_error(
            config(vec![with(tcp_app(), "id", json!("xyz"))]),
            None,
            "apps[0].id",
            "xyz",
            "32 hexadecimal digits",
        );
        let id = json!("abcdefabcdefabcdefabcdefabcdefab");
        let udp = with(udp_app(), "id", json!("ABCDEFABCDEFABCDEFABCDEFABCDEFAB"));
        only_error(
            config(vec![with(tcp_app(), "id", id), udp]),
            None,
            "apps[1].id",
            "abcdefabcdefabcdefabcdefabcdefab",
            "same id as apps[0]",
        );
    }

    fn dynamic(app: Value, connectivity: &str) -> Value {
        with(
            app,
            "edge_ips",
            json!({"type": "dynamic", "connectivity": connectivity}),
        )
    }

    fn static_ips(app: Value, ips: &[&str]) -> Value {
        let app = with(
            app,
            "dns",
            json!({"type": "ADDRESS", "name": "static.example.com"}),
        );
        with(app, "edge_ips", json!({"type": "static", "ips": ips}))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn dynamic_allocation() {
        let mut file = config(vec![
            static_ips(udp_app(), &["198.51.100.1", "2001:db8:e::1"]),
            tcp_app(),
            dynamic(udp_app(), "ipv4"),
            dynamic(with(tcp_app(), "protocol", json!("tcp/23")), "ipv6"),
        ]);
        file["apps"][3]["origin_direct"] = json!(["tcp://192.0.2.1:23"]);
        let (config_, _) = accepted(file);
        let addrs: Vec<&[IpAddr]> = config_
            .apps
            .iter()
            .map(|a| a.edge_addrs.as_slice())
            .collect();
        assert_eq!(
            addrs,
            [
                &[ip("198.51.100.1"), ip("2001:db8:e::1")][..],
                &[ip("198.51.100.2"), ip("2001:db8:e::2")],
                &[ip("198.51.100.3")],
                &[ip("2001:db8:e::3")],
            ]
        );
    }

    #[test]
    fn dynamic_allocation_exhausts_and_needs_pools() {
        let mut file = config(vec![
            dynamic(tcp_app(), "ipv4"),
            dynamic(udp_app(), "ipv4"),
            dynamic(with(tcp_app(), "protocol", json!("tcp/23")), "ipv4"),
        ]);
        file["apps"][2]["origin_direct"] = json!(["tcp://192.0.2.1:23"]);
        // A /30 holds two hosts.
        file["edge"]["address_pool"]["ipv4"] = json!("198.51.100.0/30");
        only_error(
            file.clone(),
            None,
            "apps[2].edge_ips",
            "ipv4",
            "edge.address_pool.ipv4 198.51.100.0/30 has no free address left",
        );
        file["edge"]["address_pool"] = json!({"ipv6": "2001:db8:e::/64"});
        file["apps"] = json!([tcp_app()]);
        only_error(
            file,
            None,
            "apps[0].edge_ips",
            "all",
            "need an IPv4 address, but edge.address_pool.ipv4 is not configured",
        );
    }

    fn with_leases(
        file: Value,
        leases: &[(&Config, usize)],
        extra: &[(AppId, &[&str])],
    ) -> (Config, Vec<Warning>) {
        let mut held = Leases::default();
        for (config, index) in leases {
            let app = &config.apps[*index];
            held.0.insert(app.id, app.edge_addrs.clone());
        }
        for (id, ips) in extra {
            held.0.insert(*id, ips.iter().map(|t| ip(t)).collect());
        }
        let file: ConfigFile = serde_json::from_value(file).expect("schema");
        match validate_with_leases(&file, &held) {
            Ok(ok) => ok,
            Err(errors) => panic!("refused: {errors:#?}"),
        }
    }

    #[test]
    fn leased_addresses_stay_when_an_app_is_added_in_front() {
        let ssh = tcp_app();
        let dns = udp_app();
        let (before, _) = accepted(config(vec![ssh.clone(), dns.clone()]));
        assert_eq!(
            before.apps[1].edge_addrs,
            [ip("198.51.100.2"), ip("2001:db8:e::2")]
        );
        // Without leases a new first app would shift both; with them it
        // takes the first address nobody holds.
        let mut mail = with(tcp_app(), "protocol", json!("tcp/25"));
        mail["dns"]["name"] = json!("mail.example.com");
        let file = config(vec![mail.clone(), ssh.clone(), dns.clone()]);
        let (shifted, _) = accepted(file.clone());
        assert_ne!(shifted.apps[1].edge_addrs, before.apps[0].edge_addrs);
        let (after, warnings) = with_leases(file, &[(&before, 0), (&before, 1)], &[]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(after.apps[1].edge_addrs, before.apps[0].edge_addrs);
        assert_eq!(after.apps[2].edge_addrs, before.apps[1].edge_addrs);
        assert_eq!(
            after.apps[0].edge_addrs,
            [ip("198.51.100.3"), ip("2001:db8:e::3")]
        );
        assert!(after.apps.iter().all(|a| a.edge_ips_dynamic));
        // Removing ssh frees .1 for the next new app, while dns keeps .2.
        let (later, _) = with_leases(
            config(vec![dns.clone(), mail]),
            &[(&after, 2), (&after, 0)],
            &[],
        );
        assert_eq!(later.apps[0].edge_addrs, before.apps[1].edge_addrs);
        assert_eq!(later.apps[1].edge_addrs, after.apps[0].edge_addrs);
        let (fresh, _) = with_leases(
            config(vec![dns, with(tcp_app(), "protocol", json!("tcp/2222"))]),
            &[(&after, 2)],
            &[],
        );
        assert_eq!(fresh.apps[1].edge_addrs, before.apps[0].edge_addrs);
    }

    #[test]
    fn leases_that_no_longer_fit_are_replaced_with_a_warning() {
        let (base, _) = accepted(config(vec![tcp_app()]));
        let id = base.apps[0].id;
        // Outside the pool now (the pool moved), and taken statically.
        let file = config(vec![tcp_app(), static_ips(udp_app(), &["198.51.100.9"])]);
        let (config_, warnings) =
            with_leases(file, &[], &[(id, &["203.0.113.7", "2001:db8:e::5"])]);
        assert_eq!(
            config_.apps[0].edge_addrs,
            [ip("198.51.100.1"), ip("2001:db8:e::5")]
        );
        assert!(!config_.apps[1].edge_ips_dynamic);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].field, "apps[0].edge_ips");
        assert!(warnings[0].message.contains("outside the address pool"));
    }

    #[test]
    fn a_static_address_that_an_app_leases_is_refused() {
        let (base, _) = accepted(config(vec![tcp_app()]));
        let id = base.apps[0].id;
        let file: ConfigFile = serde_json::from_value(config(vec![
            tcp_app(),
            static_ips(udp_app(), &["2001:db8:e::9", "198.51.100.9"]),
        ]))
        .unwrap();
        let mut held = Leases::default();
        held.0.insert(id, vec![ip("198.51.100.9")]);
        let errors = validate_with_leases(&file, &held).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].field, "apps[1].edge_ips.ips");
        assert_eq!(errors[0].value, "198.51.100.9");
        assert!(
            errors[0]
                .reason
                .contains("taken: apps[0] (ssh.example.com, id"),
            "{}",
            errors[0].reason
        );
    }

    #[test]
    fn dns_server_addresses_are_not_handed_out_or_shadowed() {
        let mut file = config(vec![tcp_app(), udp_app()]);
        file["dns_server"] = json!({"listen": ["198.51.100.1", "[2001:db8:e::1]"],
                                    "zones": ["example.com"]});
        let (config_, _) = accepted(file.clone());
        assert_eq!(
            config_.apps[0].edge_addrs,
            [ip("198.51.100.2"), ip("2001:db8:e::2")]
        );
        // A static udp/53 app on the server's address would take its queries.
        file["apps"] = json!([static_ips(udp_app(), &["198.51.100.1"])]);
        only_error(
            file.clone(),
            None,
            "dns_server.listen[0]",
            "198.51.100.1:53",
            "apps[0] (static.example.com) listens on udp/53",
        );
        // On another port of that address it may.
        file["apps"][0]["protocol"] = json!("udp/5353");
        file["apps"][0]["origin_direct"] = json!(["udp://192.0.2.53:5353"]);
        accepted(file);
    }

    #[test]
    fn api_checked() {
        let mut file = config(vec![tcp_app()]);
        file["api"] = json!({"listen": "127.0.0.1:8080", "token_file": "token", "zone": "z-1"});
        let (config_, _) = accepted(file.clone());
        let api = config_.api.expect("api");
        assert_eq!(api.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(api.zone, "z-1");
        // On an app's address and port, XDP would take the API's packets.
        file["api"]["listen"] = json!("198.51.100.1:22");
        only_error(
            file,
            None,
            "api.listen",
            "198.51.100.1:22",
            "apps[0] (ssh.example.com) listens on tcp/22 of this address; the management API",
        );
        for (api, field, value, reason) in [
            (
                json!({"token_file": "t", "zone": "z"}),
                "api.listen",
                "",
                "required",
            ),
            (
                json!({"listen": "localhost:80", "token_file": "t", "zone": "z"}),
                "api.listen",
                "localhost:80",
                "IP:PORT",
            ),
            (
                json!({"listen": "127.0.0.1:80", "zone": "z"}),
                "api.token_file",
                "",
                "required",
            ),
            (
                json!({"listen": "127.0.0.1:80", "token_file": "t", "zone": "a/b"}),
                "api.zone",
                "a/b",
                "zone id",
            ),
        ] {
            let mut file = config(vec![tcp_app()]);
            file["api"] = api;
            only_error(file, None, field, value, reason);
        }
    }

    #[test]
    fn dns_server_checked() {
        let mut file = config(vec![tcp_app()]);
        file["dns_server"] = json!({"listen": ["10.0.1.1", "[fd00::1]:5353"],
                                    "zones": ["Example.COM."]});
        let (config_, warnings) = accepted(file.clone());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            config_.dns_server,
            Some(DnsServer {
                listen: vec![
                    "10.0.1.1:53".parse().unwrap(),
                    "[fd00::1]:5353".parse().unwrap()
                ],
                zones: vec!["example.com".into()],
                nameserver: "ns.example.com".into(),
                ttl: DEFAULT_DNS_TTL,
            })
        );
        file["dns_server"]["zones"] = json!(["other.net"]);
        let (_, warnings) = accepted(file.clone());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].field, "apps[0].dns.name");
        // A nameserver that is an app's name, or that has no address.
        let mut named = file.clone();
        named["dns_server"] = json!({"listen": ["0.0.0.0"], "zones": ["example.com"],
                                     "nameserver": "ssh.example.com"});
        let (_, warnings) = accepted(named);
        let reasons: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(reasons[0].contains("every listen address is unspecified"));
        assert!(reasons[1].contains("apps[0] has this name"));
        for (dns, field, value, reason) in [
            (
                json!({"zones": ["example.com"]}),
                "dns_server.listen",
                "",
                "at least one",
            ),
            (
                json!({"listen": ["ns1"], "zones": ["example.com"]}),
                "dns_server.listen[0]",
                "ns1",
                "expected IP",
            ),
            (
                json!({"listen": ["10.0.1.1", "10.0.1.1:53"], "zones": ["example.com"]}),
                "dns_server.listen[1]",
                "10.0.1.1:53",
                "twice",
            ),
            (
                json!({"listen": ["10.0.1.1"]}),
                "dns_server.zones",
                "",
                "at least one zone",
            ),
            (
                json!({"listen": ["10.0.1.1"], "zones": ["*.example.com"]}),
                "dns_server.zones[0]",
                "*.example.com",
                "wildcard",
            ),
            (
                json!({"listen": ["10.0.1.1"], "zones": ["example.com"], "ttl": 0}),
                "dns_server.ttl",
                "0",
                "1 to 86400",
            ),
            (
                json!({"listen": ["10.0.1.1"], "zones": ["example.com"], "nameserver": "a..b"}),
                "dns_server.nameserver",
                "a..b",
                "empty label",
            ),
        ] {
            let mut file = config(vec![tcp_app()]);
            file["dns_server"] = dns;
            only_error(file, None, field, value, reason);
        }
    }

    #[test]
    fn static_ips_checked() {
        only_error(
            config(vec![static_ips(tcp_app(), &["203.0.113.1"])]),
            None,
            "apps[0].edge_ips.ips[0]",
            "203.0.113.1",
            "outside edge.address_pool.ipv4 198.51.100.0/24",
        );
        only_error(
            config(vec![static_ips(tcp_app(), &["198.51.100.1", "nope"])]),
            None,
            "apps[0].edge_ips.ips[1]",
            "nope",
            "not an IP address",
        );
        only_error(
            config(vec![static_ips(tcp_app(), &[])]),
            None,
            "apps[0].edge_ips.ips",
            "",
            "at least one ip",
        );
        // Without pools, static addresses are taken as given.
        let mut file = config(vec![static_ips(tcp_app(), &["203.0.113.1"])]);
        file["edge"]["address_pool"] = json!({});
        let (config_, _) = accepted(file);
        assert_eq!(config_.apps[0].edge_addrs, [ip("203.0.113.1")]);
        only_error(
            config(vec![with(tcp_app(), "edge_ips", json!({"type": "shared"}))]),
            None,
            "apps[0].edge_ips.type",
            "shared",
            "expected dynamic or static",
        );
        only_error(
            config(vec![dynamic(tcp_app(), "ipv5")]),
            None,
            "apps[0].edge_ips.connectivity",
            "ipv5",
            "expected all, ipv4 or ipv6",
        );
    }

    #[test]
    fn tls_rules() {
        let tls = |mode: &str| with(tcp_app(), "tls", json!(mode));
        let with_files = |app: Value| {
            with(
                with(app, "tls_cert", json!("/c.pem")),
                "tls_key",
                json!("/k.pem"),
            )
        };
        for (mode, want) in [
            ("flexible", TlsMode::Flexible),
            ("full", TlsMode::Full),
            ("strict", TlsMode::Strict),
        ] {
            let app = with(
                with_files(tls(mode)),
                "origin_sni",
                json!("origin.example.com"),
            );
            let (config_, warnings) = accepted(config(vec![app]));
            let a = &config_.apps[0];
            assert_eq!(a.tls, want);
            assert!(!a.fast_path());
            assert_eq!(a.tls_cert.as_deref(), Some(std::path::Path::new("/c.pem")));
            // origin_sni means nothing when the origin leg is plain TCP:
            // warned about and left out.
            let sni = (mode != "flexible").then_some("origin.example.com");
            assert_eq!(a.origin_sni.as_deref(), sni);
            assert_eq!(
                warnings.len(),
                usize::from(mode == "flexible"),
                "{warnings:?}"
            );
        }
        only_error(
            config(vec![with(tls("full"), "tls_cert", json!("/c.pem"))]),
            None,
            "apps[0].tls",
            "full",
            "needs tls_cert and tls_key; missing: tls_key",
        );
        only_error(
            config(vec![tls("on")]),
            None,
            "apps[0].tls",
            "on",
            "unknown tls mode",
        );
        only_error(
            config(vec![with_files(with(udp_app(), "tls", json!("strict")))]),
            None,
            "apps[0].tls",
            "strict",
            "udp app",
        );
        let (_, warnings) = accepted(config(vec![with_files(tcp_app())]));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].message.contains("tls is off"));
    }

    #[test]
    fn sni_certificates_follow_the_default_pair() {
        let pairs =
            json!([{"cert": "/b.pem", "key": "/b.key"}, {"cert": "/c.pem", "key": "/c.key"}]);
        let app = with(
            with(
                with(
                    with(tcp_app(), "tls", json!("flexible")),
                    "tls_cert",
                    json!("/a.pem"),
                ),
                "tls_key",
                json!("/a.key"),
            ),
            "tls_sni_certs",
            pairs.clone(),
        );
        let (model, warnings) = accepted(config(vec![app]));
        assert!(warnings.is_empty(), "{warnings:?}");
        let want: Vec<(PathBuf, PathBuf)> = [("/b.pem", "/b.key"), ("/c.pem", "/c.key")]
            .iter()
            .map(|(c, k)| (PathBuf::from(c), PathBuf::from(k)))
            .collect();
        assert_eq!(model.apps[0].tls_sni_certs, want);
        // Without TLS they mean nothing: accepted, with a warning.
        let (_, warnings) = accepted(config(vec![with(tcp_app(), "tls_sni_certs", pairs)]));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].field, "apps[0].tls_sni_certs");
    }

    #[test]
    fn cloudflare_exports_load_with_spp_and_read_only_fields() {
        let mut a = json!({"protocol": "udp/53", "dns": {"type": "CNAME", "name": "d.example.com"},
            "origin_direct": ["udp://192.0.2.1:53"], "spp": true,
            "created_on": "2014-01-01T05:20:00.12345Z", "modified_on": "2014-01-01T05:20:00.12345Z"});
        let (model, _) = accepted(config(vec![a.clone()]));
        assert_eq!(model.apps[0].proxy_protocol, ProxyProtocol::Simple);
        a["proxy_protocol"] = json!("v2");
        let errors = refused(config(vec![a]));
        assert!(
            errors.iter().any(|e| e.field == "apps[0].spp"),
            "{errors:?}"
        );
    }

    #[test]
    fn flow_timeouts_default_override_and_bounds() {
        let mut file = config(vec![tcp_app()]);
        file["edge"]["flow_timeouts"] = json!({"udp": 5});
        let (model, _) = accepted(file.clone());
        assert_eq!(
            model.edge.flow_timeouts.udp,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            model.edge.flow_timeouts.tcp_established,
            FlowTimeouts::default().tcp_established
        );
        file["edge"]["flow_timeouts"] = json!({"tcp_new": 0});
        let errors = refused(file);
        assert_eq!(errors[0].field, "edge.flow_timeouts.tcp_new");
    }

    #[test]
    fn client_limits_edge_default_app_override_and_errors() {
        let mut file = config(vec![tcp_app(), tcp_app()]);
        file["apps"][1]["protocol"] = json!("tcp/23");
        file["apps"][1]["dns"]["name"] = json!("other.example.com");
        file["edge"]["client_limits"] = json!({"concurrent_flows": 10, "prefix_v4": 24});
        file["apps"][1]["client_limits"] = json!({"concurrent_flows": 3});
        let (model, _) = accepted(file.clone());
        let edge = model.edge.client_limits;
        assert_eq!((edge.concurrent_flows, edge.prefix_v4), (10, 24));
        assert_eq!(model.apps[0].client_limits, edge);
        let app = model.apps[1].client_limits;
        assert_eq!((app.concurrent_flows, app.prefix_v4), (3, 24));
        file["apps"][1]["client_limits"] = json!({"prefix_v6": 129});
        let errors = refused(file);
        assert_eq!(errors[0].field, "apps[1].client_limits.prefix_v6");
        assert_eq!(errors[0].value, "129");
    }

    #[test]
    fn tcp_proxy_default_override_and_bounds() {
        let mut file = config(vec![tcp_app()]);
        file["edge"]["tcp_proxy"] = json!({"idle_timeout": 30, "max_connections": 10});
        let (model, _) = accepted(file.clone());
        assert_eq!(
            model.edge.tcp_proxy.idle_timeout,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(model.edge.tcp_proxy.max_connections, 10);
        assert_eq!(
            model.edge.tcp_proxy.handshake_timeout,
            TcpProxy::default().handshake_timeout
        );
        file["edge"]["tcp_proxy"] = json!({"connect_timeout": 0, "max_connections": 0});
        let fields: Vec<String> = refused(file).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "edge.tcp_proxy.connect_timeout",
                "edge.tcp_proxy.max_connections"
            ]
        );
    }

    #[test]
    fn resolver_addresses() {
        assert_eq!(
            parse_resolver("192.0.2.53"),
            Ok("192.0.2.53:53".parse().unwrap())
        );
        assert_eq!(
            parse_resolver("[2001:db8::53]:5353"),
            Ok("[2001:db8::53]:5353".parse().unwrap())
        );
        assert_eq!(
            parse_resolver("[2001:db8::53]"),
            Ok("[2001:db8::53]:53".parse().unwrap())
        );
        assert!(parse_resolver("dns.example.com").is_err());
        assert!(parse_resolver("[192.0.2.1").is_err());
    }

    #[test]
    fn ipv4_mapped_addresses_are_refused() {
        let app = static_ips(
            json!({"protocol": "tcp/22", "dns": {"type": "ADDRESS", "name": "m.example.com"},
                "origin_direct": ["tcp://[::ffff:192.0.2.1]:22"]}),
            &["::ffff:198.51.100.5"],
        );
        let errors = refused(config(vec![app]));
        assert!(
            errors
                .iter()
                .any(|e| e.field == "apps[0].edge_ips.ips[0]"
                    && e.reason.contains("write 198.51.100.5")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.field == "apps[0].origin_direct[0]"
                    && e.reason.contains("write 192.0.2.1")),
            "{errors:?}"
        );
    }

    #[test]
    fn udp_proxy_header_placement_and_limits() {
        let v2 = with(udp_app(), "proxy_protocol", json!("v2"));
        let every = with(v2.clone(), "proxy_protocol_udp", json!("every_datagram"));
        let (model, warnings) = accepted(config(vec![v2.clone()]));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(!model.apps[0].proxy_header_every_datagram);
        assert_eq!(model.edge.udp_proxy, UdpProxy::default());
        let (model, warnings) = accepted(config(vec![every]));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(model.apps[0].proxy_header_every_datagram);
        only_error(
            config(vec![with(v2, "proxy_protocol_udp", json!("always"))]),
            None,
            "apps[0].proxy_protocol_udp",
            "always",
            "expected first_datagram or every_datagram",
        );
        // Meaningless on SPP and on TCP: accepted with a warning.
        let spp = with(udp_app(), "proxy_protocol", json!("simple"));
        let (model, warnings) = accepted(config(vec![with(
            spp,
            "proxy_protocol_udp",
            json!("every_datagram"),
        )]));
        assert!(!model.apps[0].proxy_header_every_datagram);
        assert_eq!(warnings[0].field, "apps[0].proxy_protocol_udp");
        let mut file = config(vec![udp_app()]);
        file["edge"]["udp_proxy"] = json!({"idle_timeout": 5, "max_flows": 3});
        let (model, _) = accepted(file.clone());
        assert_eq!(
            model.edge.udp_proxy,
            UdpProxy {
                idle_timeout: std::time::Duration::from_secs(5),
                max_flows: 3
            }
        );
        file["edge"]["udp_proxy"] = json!({"idle_timeout": 0, "max_flows": 0});
        let fields: Vec<String> = refused(file).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["edge.udp_proxy.idle_timeout", "edge.udp_proxy.max_flows"]
        );
    }

    #[test]
    fn proxy_protocol_rules() {
        let pp = |app: Value, v: Value| {
            accepted(config(vec![with(app, "proxy_protocol", v)]))
                .0
                .apps[0]
                .proxy_protocol
        };
        assert_eq!(pp(tcp_app(), json!(true)), ProxyProtocol::V1);
        assert_eq!(pp(tcp_app(), json!(false)), ProxyProtocol::Off);
        assert_eq!(pp(tcp_app(), json!("v1")), ProxyProtocol::V1);
        assert_eq!(pp(udp_app(), json!("v2")), ProxyProtocol::V2);
        assert_eq!(pp(udp_app(), json!("off")), ProxyProtocol::Off);
        only_error(
            config(vec![with(udp_app(), "proxy_protocol", json!("v1"))]),
            None,
            "apps[0].proxy_protocol",
            "v1",
            "TCP only",
        );
        only_error(
            config(vec![with(udp_app(), "proxy_protocol", json!(true))]),
            None,
            "apps[0].proxy_protocol",
            "true",
            "TCP only",
        );
        only_error(
            config(vec![with(tcp_app(), "proxy_protocol", json!("simple"))]),
            None,
            "apps[0].proxy_protocol",
            "simple",
            "UDP only",
        );
        only_error(
            config(vec![with(tcp_app(), "proxy_protocol", json!("v3"))]),
            None,
            "apps[0].proxy_protocol",
            "v3",
            "unknown",
        );
    }

    #[test]
    fn unsupported_features() {
        only_error(
            config(vec![with(tcp_app(), "traffic_type", json!("https"))]),
            None,
            "apps[0].traffic_type",
            "https",
            "not supported: this proxy is L4 only",
        );
        only_error(
            config(vec![with(tcp_app(), "traffic_type", json!("quic"))]),
            None,
            "apps[0].traffic_type",
            "quic",
            "only direct",
        );
        only_error(
            config(vec![with(tcp_app(), "argo_smart_routing", json!(true))]),
            None,
            "apps[0].argo_smart_routing",
            "true",
            "not supported",
        );
    }

    #[test]
    fn dns_names() {
        for name in ["*.example.com", "example.com.", "a-b.c", "x"] {
            let app = with(tcp_app(), "dns", json!({"type": "CNAME", "name": name}));
            accepted(config(vec![app]));
        }
        let long_label = "a".repeat(64);
        let long_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        for (name, reason) in [
            ("", "empty name"),
            ("a..b", "empty label"),
            ("a.*.b", "may hold only"),
            ("a-.example.com", "starts or ends with '-'"),
            (long_label.as_str(), "longer than 63"),
            (long_name.as_str(), "at most 253"),
            ("exa mple.com", "may hold only"),
        ] {
            let app = with(tcp_app(), "dns", json!({"type": "CNAME", "name": name}));
            only_error(config(vec![app]), None, "apps[0].dns.name", name, reason);
        }
        only_error(
            config(vec![with(
                tcp_app(),
                "dns",
                json!({"type": "A", "name": "a.example.com"}),
            )]),
            None,
            "apps[0].dns.type",
            "A",
            "expected CNAME or ADDRESS",
        );
    }

    #[test]
    fn edge_settings() {
        let edge = |edge: Value| json!({"edge": edge});
        let (config_, _) = accepted(edge(json!({
            "interfaces": ["eth0", "enp3s0f1"],
            "xdp_mode": "skb",
            "address_pool": {"ipv4": "198.51.100.0/24"},
            "origin_source": {"ipv4": "10.1.0.1", "ipv6": "fd00:1::1"},
            "geoip": {"asn_db": "/geo/asn.mmdb"}
        })));
        let e = &config_.edge;
        assert_eq!(e.interfaces, ["eth0", "enp3s0f1"]);
        assert_eq!(e.xdp_mode, Some(XdpMode::Skb));
        assert_eq!(
            e.address_pool.ipv4,
            Some("198.51.100.0/24".parse().unwrap())
        );
        assert_eq!(e.address_pool.ipv6, None);
        assert_eq!(e.origin_source.ipv4, Some(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(e.origin_source.ipv6, Some("fd00:1::1".parse().unwrap()));
        assert_eq!(
            e.geoip.asn_db.as_deref(),
            Some(std::path::Path::new("/geo/asn.mmdb"))
        );

        only_error(edge(json!({})), None, "edge.interfaces", "", "at least one");
        for bad in ["", "a/b", "eth 0", ".", "..", "averyveryverylong"] {
            only_error(
                edge(json!({"interfaces": [bad]})),
                None,
                "edge.interfaces[0]",
                bad,
                "",
            );
        }
        only_error(
            edge(json!({"interfaces": ["eth0", "eth0"]})),
            None,
            "edge.interfaces[1]",
            "eth0",
            "twice",
        );
        only_error(
            edge(json!({"interfaces": ["eth0"], "xdp_mode": "hw"})),
            None,
            "edge.xdp_mode",
            "hw",
            "native or skb",
        );
        only_error(
            edge(json!({"interfaces": ["eth0"], "address_pool": {"ipv4": "2001:db8::/64"}})),
            None,
            "edge.address_pool.ipv4",
            "2001:db8::/64",
            "belongs in edge.address_pool.ipv6",
        );
        only_error(
            edge(json!({"interfaces": ["eth0"], "address_pool": {"ipv6": "2001:db8::1/64"}})),
            None,
            "edge.address_pool.ipv6",
            "2001:db8::1/64",
            "host bits",
        );
        only_error(
            edge(json!({"interfaces": ["eth0"], "origin_source": {"ipv6": "10.0.0.1"}})),
            None,
            "edge.origin_source.ipv6",
            "10.0.0.1",
            "IPv6",
        );
    }

    #[test]
    fn all_errors_are_collected() {
        let bad_app = with(
            with(tcp_app(), "protocol", json!("tcp/0")),
            "tls",
            json!("sometimes"),
        );
        let mut file = config(vec![bad_app]);
        file["access_rules"] = json!([rule("block", "ip", "::1")]);
        let errors = refused(file);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "apps[0].protocol",
                "apps[0].tls",
                "access_rules[0].configuration.value"
            ]
        );
    }
}
