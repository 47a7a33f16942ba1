//! Spectrum apps: `/zones/{zone}/spectrum/apps[/{app_id}]`, listed, read,
//! created, replaced and deleted, each answered in Cloudflare's shape.
use std::net::IpAddr;

use axum::{body::Bytes, extract::State, http::StatusCode};
use serde::Serialize;

use super::change::{self, submit};
use super::error::{ApiError, CODE_APPLY, CODE_NOT_FOUND, Envelope};
use super::extract::{Collection, Object, Page, Zone, json_body};
use super::pem;
use super::{APPS, ApiState};
use crate::config::model::{App, Config, Origin, OriginFamily};

/// The apps of the zone.
pub struct Apps;

impl Collection for Apps {
    const ROUTE: &'static str = APPS;
}

/// An app in Cloudflare's shape (what a `GET` of the app returns there).
#[derive(Debug, Serialize)]
pub struct AppJson {
    id: String,
    protocol: String,
    dns: DnsJson,
    proxy_protocol: String,
    tls: String,
    traffic_type: &'static str,
    ip_firewall: bool,
    argo_smart_routing: bool,
    edge_ips: EdgeIps,
    /// Not part of Cloudflare's shape: the addresses in use.
    edge_addresses: Vec<String>,
    created_on: Option<String>,
    modified_on: Option<String>,
    /// Not Cloudflare's: where this app's fast path runs, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    datapath: Option<String>,
    #[serde(flatten)]
    origin: OriginJson,
}

#[derive(Debug, Serialize)]
struct DnsJson {
    #[serde(rename = "type")]
    kind: String,
    name: String,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum EdgeIps {
    Dynamic { connectivity: &'static str },
    Static { ips: Vec<String> },
}

/// `origin_direct`, or `origin_dns` with `origin_port`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OriginJson {
    Direct {
        origin_direct: Vec<String>,
    },
    Dns {
        origin_dns: OriginDnsJson,
        origin_port: OriginPort,
    },
}

#[derive(Debug, Serialize)]
struct OriginDnsJson {
    name: String,
    ttl: u32,
    /// "A", "AAAA", or "" for either.
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A port as a number, a range as "first-last".
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OriginPort {
    One(u16),
    Range(String),
}

/// `app` in Cloudflare's shape.
pub fn app_json(app: &App) -> AppJson {
    let bracket = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let edge_ips = if app.edge_ips_dynamic {
        let v4 = app.edge_addrs.iter().any(IpAddr::is_ipv4);
        let v6 = app.edge_addrs.iter().any(IpAddr::is_ipv6);
        let connectivity = match (v4, v6) {
            (true, false) => "ipv4",
            (false, true) => "ipv6",
            _ => "all",
        };
        EdgeIps::Dynamic { connectivity }
    } else {
        let ips = app.edge_addrs.iter().map(IpAddr::to_string).collect();
        EdgeIps::Static { ips }
    };
    let origin = match &app.origin {
        Origin::Direct(origins) => OriginJson::Direct {
            origin_direct: origins
                .iter()
                .map(|o| format!("{}://{}:{}", app.protocol, bracket(&o.ip), o.ports))
                .collect(),
        },
        Origin::Dns(dns) => {
            let kind = match dns.family {
                OriginFamily::Any => "",
                OriginFamily::V4 => "A",
                OriginFamily::V6 => "AAAA",
            };
            OriginJson::Dns {
                origin_dns: OriginDnsJson {
                    name: dns.name.clone(),
                    ttl: dns.ttl,
                    kind,
                },
                origin_port: if dns.ports.start == dns.ports.end {
                    OriginPort::One(dns.ports.start)
                } else {
                    OriginPort::Range(dns.ports.to_string())
                },
            }
        }
    };
    AppJson {
        id: app.id.to_string(),
        protocol: format!("{}/{}", app.protocol, app.edge_ports),
        dns: DnsJson {
            kind: app.dns.kind.to_string(),
            name: app.dns.name.clone(),
        },
        proxy_protocol: app.proxy_protocol.to_string(),
        tls: app.tls.to_string(),
        traffic_type: "direct",
        ip_firewall: app.ip_firewall,
        argo_smart_routing: false,
        edge_ips,
        edge_addresses: app.edge_addrs.iter().map(IpAddr::to_string).collect(),
        created_on: app.created_on.clone(),
        modified_on: app.modified_on.clone(),
        datapath: app.datapath.map(|mode| mode.to_string()),
        origin,
    }
}

pub async fn list(
    State(state): State<ApiState>,
    _: Zone<Apps>,
    page: Page,
) -> Envelope<Vec<AppJson>> {
    page.of(&state.config().apps, app_json)
}

pub async fn get(
    State(state): State<ApiState>,
    app: Object<Apps>,
) -> Result<Envelope<AppJson>, ApiError> {
    match find_app(&state.config(), &app.id) {
        Some(found) => Ok(Envelope::ok(app_json(found))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            format!("no app {} in zone {}", app.id, app.zone),
        )),
    }
}

// The handlers with a body take the path as a `Result`: see [`Zone`].

pub async fn create(
    State(state): State<ApiState>,
    zone: Result<Zone<Apps>, ApiError>,
    body: Bytes,
) -> Result<Envelope<AppJson>, ApiError> {
    zone?;
    let body = json_body(&body)?;
    let body = pem::store_app_pem(&state.config().edge.state_dir, body).await?;
    let (config, id) = submit(&state, move |doc, now| doc.add_app(body, now)).await?;
    app_answer(&config, &id)
}

pub async fn replace(
    State(state): State<ApiState>,
    app: Result<Object<Apps>, ApiError>,
    body: Bytes,
) -> Result<Envelope<AppJson>, ApiError> {
    let Object { id, .. } = app?;
    let body = json_body(&body)?;
    let body = pem::store_app_pem(&state.config().edge.state_dir, body).await?;
    let (config, id) = submit(&state, move |doc, now| {
        doc.replace_app(&id, body, now)?;
        Ok(id)
    })
    .await?;
    app_answer(&config, &id)
}

pub async fn delete(
    State(state): State<ApiState>,
    app: Object<Apps>,
) -> Result<Envelope<change::Deleted>, ApiError> {
    change::delete(&state, app.id, |doc, id| doc.delete_app(id)).await
}

/// The app with `id` (any case), if it runs.
fn find_app<'a>(config: &'a Config, id: &str) -> Option<&'a App> {
    let wanted = id.to_ascii_lowercase();
    config.apps.iter().find(|a| a.id.to_string() == wanted)
}

/// The app a change created or changed, as it now runs.
fn app_answer(config: &Config, id: &str) -> Result<Envelope<AppJson>, ApiError> {
    match find_app(config, id) {
        Some(app) => Ok(Envelope::ok(app_json(app))),
        None => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_APPLY,
            format!("app {id} accepted but not found afterwards"),
        )),
    }
}
