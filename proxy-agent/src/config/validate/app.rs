//! One app: its fields, DNS name, edge addresses.
use super::*;

impl Validator {
    pub(super) fn app(&mut self, i: usize, a: &AppFile, pools: &Pools) -> AppDraft {
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

    pub(super) fn dns(&mut self, i: usize, a: &AppFile) -> Option<Dns> {
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

    pub(super) fn edge_ips(
        &mut self,
        i: usize,
        e: Option<&EdgeIpsFile>,
        pools: &Pools,
    ) -> Option<EdgeIps> {
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

    pub(super) fn static_ip(&self, text: &str, pools: &Pools) -> Result<IpAddr, String> {
        let ip: IpAddr = text.parse().map_err(|_| "not an IP address".to_string())?;
        let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if ip.is_unspecified() || ip.is_multicast() || broadcast {
            return Err("an edge address must be a unicast address".to_string());
        }
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Err(format!(
                "an IPv4-mapped IPv6 address is the IPv4 address {v4} to the data path: write {v4}"
            ));
        }
        // The host's own: sk_lookup and XDP would take over its services.
        if ip.is_loopback() {
            return Err("a loopback address is the host's own, not an edge address".to_string());
        }
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        if link_local {
            return Err(
                "a link-local address is not routed to the edge; use a routed address".to_string(),
            );
        }
        let family = Family::of(ip);
        match pools.get(family) {
            Pool::Net(net) if !net.contains(&ip) => {
                Err(format!("outside {} {net}", pool_field(family)))
            }
            _ => Ok(ip),
        }
    }

    pub(super) fn dns_fits_edge_ips(
        &mut self,
        i: usize,
        kind: DnsKind,
        edge_ips: &EdgeIps,
        given: bool,
    ) {
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
}
