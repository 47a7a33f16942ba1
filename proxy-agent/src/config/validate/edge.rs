//! The `edge` section: interfaces, pools, origin sources, NAT ports, flow
//! timeouts, the agent paths' limits, the DNS server and the API.
use super::*;

impl Validator {
    pub(super) fn edge(&mut self, e: &EdgeFile) -> (Edge, Pools) {
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
            ipv4: self
                .source_addrs(Family::V4, e.origin_source.ipv4.as_ref())
                .into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            ipv6: self
                .source_addrs(Family::V6, e.origin_source.ipv6.as_ref())
                .into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                })
                .collect(),
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
        self.nat_ports(nat_ports);
        let unlisted = match e.unlisted.as_deref() {
            None | Some("drop") => Unlisted::Drop,
            Some("pass") => Unlisted::Pass,
            Some(other) => {
                self.error(
                    None,
                    "edge.unlisted",
                    other,
                    "unknown unlisted; expected drop or pass",
                );
                Unlisted::Drop
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
            (
                "udp_unreplied",
                e.flow_timeouts.udp_unreplied,
                &mut flow_timeouts.udp_unreplied,
            ),
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
        let syn_proxy = self.on_off("edge.syn_proxy", e.syn_proxy.as_deref(), true);
        let allow_rx_vlan_offload = self.on_off(
            "edge.allow_rx_vlan_offload",
            e.allow_rx_vlan_offload.as_deref(),
            false,
        );
        let edge = Edge {
            interfaces: e.interfaces.clone(),
            xdp_mode,
            datapath: datapath.unwrap_or_default(),
            address_pool,
            lease_file: e.address_pool.state_file.clone(),
            origin_source,
            geoip,
            nat_ports,
            unlisted,
            resolver,
            flow_timeouts,
            tcp_proxy,
            udp_proxy,
            client_limits,
            syn_proxy,
            allow_rx_vlan_offload,
            state_dir: e
                .state_dir
                .clone()
                .unwrap_or_else(|| crate::config::model::DEFAULT_STATE_DIR.into()),
        };
        (edge, pools)
    }

    /// A limit on connections or flows: `slot` keeps its default when
    /// `value` is absent; out of 1..=1,000,000 is an error on `field`.
    pub(super) fn count(&mut self, field: String, value: Option<u64>, slot: &mut usize) {
        match value {
            None => {}
            Some(n @ 1..=1_000_000) => *slot = n as usize,
            Some(n) => self.error(None, field, n.to_string(), "expected 1 to 1000000"),
        }
    }

    /// A timeout in seconds: `slot` keeps its default when `value` is absent;
    /// out of 1..=MAX_FLOW_TIMEOUT_SECS is an error on `field`.
    pub(super) fn seconds(
        &mut self,
        field: String,
        value: Option<u64>,
        slot: &mut std::time::Duration,
    ) {
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

    pub(super) fn dns_server(&mut self, d: &DnsServerFile, apps: &[AppFile]) -> Option<DnsServer> {
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
        let mut responses_per_second = DEFAULT_DNS_RESPONSES_PER_SECOND;
        match d.responses_per_second {
            None => {}
            Some(n @ 0..=1_000_000) => responses_per_second = n as u32,
            Some(n) => self.error(
                None,
                "dns_server.responses_per_second",
                n.to_string(),
                "expected 0 (no limit) to 1000000 responses a second per client prefix",
            ),
        }
        let mut max_tcp_connections = DEFAULT_DNS_MAX_TCP_CONNECTIONS;
        match d.max_tcp_connections {
            None => {}
            Some(n @ 1..=65_536) => max_tcp_connections = n as usize,
            Some(n) => self.error(
                None,
                "dns_server.max_tcp_connections",
                n.to_string(),
                "expected 1 to 65536 connections",
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
            responses_per_second,
            max_tcp_connections,
        })
    }

    pub(super) fn api(&mut self, a: &ApiFile) -> Option<Api> {
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
        let tls = match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(ApiTls {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            (Some(cert), None) => {
                self.error(
                    None,
                    "api.tls_key",
                    "",
                    format!("required with api.tls_cert ({})", cert.display()),
                );
                None
            }
            (None, Some(key)) => {
                self.error(
                    None,
                    "api.tls_cert",
                    "",
                    format!("required with api.tls_key ({})", key.display()),
                );
                None
            }
        };
        if self.errors.len() > errors {
            return None;
        }
        Some(Api {
            listen: listen?,
            token_file: a.token_file.clone()?,
            tls,
            zone,
        })
    }

    /// The agent's own sockets (the DNS server's, the API's) may sit on an
    /// edge address, but no app may listen on their port there: XDP or
    /// sk_lookup would take their packets. `field` names each entry.
    pub(super) fn own_sockets_free(
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

    pub(super) fn tcp_proxy(&mut self, file: &TcpProxyFile) -> TcpProxy {
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
    pub(super) fn client_limits(
        &mut self,
        edge: ClientLimits,
        file: Option<&crate::config::schema::ClientLimitsFile>,
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

    pub(super) fn udp_proxy(&mut self, file: &UdpProxyFile) -> UdpProxy {
        let mut out = UdpProxy::default();
        let field = "edge.udp_proxy.idle_timeout".to_string();
        self.seconds(field, file.idle_timeout, &mut out.idle_timeout);
        let field = "edge.udp_proxy.max_flows".to_string();
        self.count(field, file.max_flows, &mut out.max_flows);
        out
    }

    pub(super) fn pool(&mut self, family: Family, text: Option<&str>) -> Pool {
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

    /// `edge.origin_source.<family>`: one address or a list of distinct
    /// ones, at most `MAX_ORIGIN_SOURCES`.
    pub(super) fn source_addrs(
        &mut self,
        family: Family,
        value: Option<&OneOrMany>,
    ) -> Vec<IpAddr> {
        let Some(value) = value else {
            return Vec::new();
        };
        let base = format!("edge.origin_source.{}", family.key());
        let items = value.items();
        if items.is_empty() {
            self.error(
                None,
                base.clone(),
                "[]",
                "empty list; give at least one address or leave the setting out",
            );
        }
        if items.len() > MAX_ORIGIN_SOURCES as usize {
            self.error(
                None,
                base.clone(),
                items.len().to_string(),
                format!("{} addresses; at most {MAX_ORIGIN_SOURCES}", items.len()),
            );
            return Vec::new();
        }
        let mut addrs = Vec::new();
        for (k, text) in items.iter().enumerate() {
            let field = match value {
                OneOrMany::One(_) => base.clone(),
                OneOrMany::Many(_) => format!("{base}[{k}]"),
            };
            let Some(ip) = self.source_addr(family, field.clone(), text) else {
                continue;
            };
            if addrs.contains(&ip) {
                self.error(None, field, text, "address listed twice");
            } else {
                addrs.push(ip);
            }
        }
        addrs
    }

    /// `edge.nat_ports` once parsed: a range too small for much traffic
    /// toward one origin, or one into the privileged ports, is allowed
    /// with a warning. (The kernel's ephemeral range, which the agent's
    /// own origin connections use, is checked at start: it is the host's.)
    pub(super) fn nat_ports(&mut self, range: PortRange) {
        let value = format!("{}-{}", range.start, range.end);
        let ports = range.len();
        if ports < MIN_NAT_PORTS {
            self.warn(
                "edge.nat_ports",
                value.clone(),
                format!(
                    "only {ports} ports: each origin source holds at most {ports} fast-path \
                     flows to one origin address and port; at least {MIN_NAT_PORTS} are advised"
                ),
            );
        }
        if range.start < 1024 {
            self.warn(
                "edge.nat_ports",
                value,
                "starts below 1024: the NAT may take ports of the host's own services \
                 on the origin source addresses",
            );
        }
    }

    /// One of the agent's own sockets on an origin source address (or on
    /// all addresses) with a port inside `edge.nat_ports`: the NAT could
    /// hand that port to a flow, whose origin replies the fast path then
    /// takes from the socket. Refused.
    pub(super) fn nat_port_taken(&mut self, edge: &Edge, field: &str, addr: std::net::SocketAddr) {
        let sources = &edge.origin_source;
        let on_source = addr.ip().is_unspecified()
            || match addr.ip() {
                IpAddr::V4(v4) => sources.ipv4.contains(&v4),
                IpAddr::V6(v6) => sources.ipv6.contains(&v6),
            };
        if on_source && edge.nat_ports.contains(addr.port()) {
            self.error(
                None,
                "edge.nat_ports",
                format!("{}-{}", edge.nat_ports.start, edge.nat_ports.end),
                format!(
                    "holds port {} of {field} ({addr}), an origin source address: \
                     keep the agent's own ports out of the NAT's range",
                    addr.port()
                ),
            );
        }
    }

    pub(super) fn source_addr(
        &mut self,
        family: Family,
        field: String,
        text: &str,
    ) -> Option<IpAddr> {
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

    pub(super) fn path(&mut self, field: &str, path: Option<&PathBuf>) -> Option<PathBuf> {
        let path = path?;
        if path.as_os_str().is_empty() {
            self.error(None, field, "", "empty path; leave the setting out instead");
            return None;
        }
        Some(path.clone())
    }
}
