//! One app's origin (direct or DNS), PROXY header and TLS mode.
use super::*;

impl Validator {
    pub(super) fn origin(
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

    pub(super) fn origin_direct(
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

    pub(super) fn origin_dns(
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

    pub(super) fn proxy_protocol(
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
    pub(super) fn proxy_protocol_udp(
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

    pub(super) fn tls(
        &mut self,
        i: usize,
        a: &AppFile,
        protocol: Option<Protocol>,
    ) -> Option<TlsMode> {
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
}
