//! `validate()`: the file as written -> the model, or every reason it cannot be.
//!
//! Each check records its errors and goes on, so one run reports every
//! problem in the file, not just the first. The checks are `Validator`
//! methods, one file per concern: `edge`, `app`, `origin`, `listeners`
//! (across apps), `rules`; `parse` holds the value parsers they share.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::leases::Leases;
use super::model::{
    AccessRule, AddressPool, Api, App, AppId, ClientLimits, Config, ConfigError, DEFAULT_DNS_TTL,
    DEFAULT_NAT_PORTS, DatapathMode, Dns, DnsKind, DnsServer, ERR_DNS_EDGE_IPS, ERR_ORIGIN_ADDR,
    ERR_ORIGIN_CHOICE, ERR_ORIGIN_DNS, Edge, FlowTimeouts, GeoIp, MIN_NAT_PORTS,
    MIN_ORIGIN_DNS_TTL, Origin, OriginAddr, OriginDns, OriginFamily, OriginSource, PortRange,
    Protocol, ProxyProtocol, RuleAction, RuleTarget, TcpProxy, TlsMode, UdpProxy, Unlisted,
    Warning, XdpMode,
};
use super::schema::{
    AccessRuleFile, ApiFile, AppFile, ConfigFile, DnsServerFile, EdgeFile, EdgeIpsFile, OneOrMany,
    OriginDnsFile, OriginPortFile, ProxyProtocolFile, RuleConfigurationFile, TcpProxyFile,
    UdpProxyFile,
};
use proxy_common::MAX_ORIGIN_SOURCES;

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
    let draft_syn_proxy: Vec<bool> = (file.apps.iter().enumerate())
        .map(|(i, app)| {
            let field = format!("apps[{i}].syn_proxy");
            v.on_off(&field, app.syn_proxy.as_deref(), edge.syn_proxy)
        })
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
    let own_ports = (dns_server.iter().flat_map(|d| d.listen.iter().enumerate()))
        .map(|(k, addr)| (format!("dns_server.listen[{k}]"), *addr))
        .chain(api.iter().map(|a| ("api.listen".to_string(), a.listen)));
    for (field, addr) in own_ports {
        v.nat_port_taken(&edge, &field, addr);
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
            app.syn_proxy = draft_syn_proxy[slot];
            Some(app)
        })
        .collect();
    // `syn_proxy: on` written on an app it cannot apply to: said, not refused.
    for app in apps.iter().flatten() {
        let slot = app.slot as usize;
        if file.apps[slot].syn_proxy.as_deref() == Some("on") && !app.syn_proxied() {
            v.warn(
                format!("apps[{slot}].syn_proxy"),
                "on",
                "has no effect: only fast-path TCP apps (tls off, no proxy_protocol) \
                 have the kernel's SYN proxy; the agent's path has the kernel's own SYN cookies",
            );
        }
    }
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
            syn_proxy: true,
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

    /// An `on`/`off` setting (`syn_proxy`): `default` when absent.
    fn on_off(&mut self, field: &str, text: Option<&str>, default: bool) -> bool {
        match text {
            None => default,
            Some("on") => true,
            Some("off") => false,
            Some(other) => {
                let key = field.rsplit('.').next().unwrap_or(field);
                self.error(
                    None,
                    field,
                    other,
                    format!("unknown {key}; expected on or off"),
                );
                default
            }
        }
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
}

mod app;
mod edge;
mod listeners;
mod origin;
mod parse;
mod rules;

#[cfg(test)]
mod tests;

use parse::*;
pub(crate) use parse::{canonical_name, in_zone};
use rules::*;
