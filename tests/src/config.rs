//! Agent configs for the tests, built from parts instead of written out as
//! JSON strings: the edge every topology shares, then the sections a test
//! needs. What the agent reads is plain JSON; key order does not matter to it.
use std::{fmt::Display, path::Path};

use serde_json::{Map, Value, json};

use crate::netns::addr;

/// A whole config file: `edge` (both edge interfaces and the address pool,
/// plus what [`ConfigBuilder::edge`] adds), then `api`, `dns_server`,
/// `apps` and `access_rules` as the test sets them.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    edge: Map<String, Value>,
    sections: Map<String, Value>,
    apps: Vec<Value>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    /// The topology's edge and no apps.
    pub fn new() -> Self {
        let edge = json!({
            "interfaces": [addr::EDGE_CLI_IF, addr::EDGE_ORG_IF],
            "address_pool": {"ipv4": addr::POOL_V4, "ipv6": addr::POOL_V6},
        });
        Self {
            edge: into_map(edge),
            sections: Map::new(),
            apps: Vec::new(),
        }
    }

    /// One more field of the `edge` object (`nat_ports`, `datapath`,
    /// `tcp_proxy`, `flow_timeouts`, `geoip`, ...).
    pub fn edge(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.edge.insert(key.to_owned(), value.into());
        self
    }

    /// The edge's resolver for `origin_dns` names.
    pub fn resolver(self, ip: &str) -> Self {
        self.edge("resolver", ip)
    }

    /// The management API on the edge's `cli`-facing address (its token
    /// file written by [`write_token_file`]).
    pub fn api(self, port: u16, token_file: &Path, zone: &str) -> Self {
        self.section(
            "api",
            json!({
                "listen": format!("{}:{port}", addr::EDGE_CLI_V4),
                "token_file": token_file.display().to_string(),
                "zone": zone,
            }),
        )
    }

    /// The embedded DNS server on `listen` (addresses as the config spells
    /// them: `10.0.1.1`, `[fd00:1::1]`).
    pub fn dns_server(self, listen: &[&str], zone: &str, ttl: u32) -> Self {
        self.section(
            "dns_server",
            json!({"listen": listen, "zones": [zone], "ttl": ttl}),
        )
    }

    pub fn app(mut self, app: impl Into<Value>) -> Self {
        self.apps.push(app.into());
        self
    }

    pub fn apps<A: Into<Value>>(mut self, apps: impl IntoIterator<Item = A>) -> Self {
        self.apps.extend(apps.into_iter().map(Into::into));
        self
    }

    /// The `access_rules` list (JSON: rules are written as the API takes them).
    pub fn access_rules(self, rules: Value) -> Self {
        self.section("access_rules", rules)
    }

    fn section(mut self, key: &str, value: Value) -> Self {
        self.sections.insert(key.to_owned(), value);
        self
    }

    /// The config as a JSON value.
    pub fn value(&self) -> Value {
        let mut config = Map::new();
        config.insert("edge".to_owned(), Value::Object(self.edge.clone()));
        config.extend(self.sections.clone());
        config.insert("apps".to_owned(), Value::Array(self.apps.clone()));
        Value::Object(config)
    }

    /// The config file's text.
    pub fn build(&self) -> String {
        serde_json::to_string_pretty(&self.value()).unwrap_or_default()
    }
}

/// One entry of `apps`: a protocol and port (range), a CNAME, then its
/// origins and options.
#[derive(Clone, Debug)]
pub struct AppJson(Map<String, Value>);

impl AppJson {
    /// `protocol` as the config spells it (`tcp/22`, `udp/5300-5310`) and
    /// the app's DNS name (a CNAME).
    pub fn new(protocol: &str, cname: &str) -> Self {
        Self(into_map(json!({
            "protocol": protocol,
            "dns": {"type": "CNAME", "name": cname},
        })))
    }

    /// `tcp/<ports>` (a port or a range).
    pub fn tcp(ports: impl Display, cname: &str) -> Self {
        Self::new(&format!("tcp/{ports}"), cname)
    }

    /// `udp/<ports>` (a port or a range).
    pub fn udp(ports: impl Display, cname: &str) -> Self {
        Self::new(&format!("udp/{ports}"), cname)
    }

    /// `origin_direct`: origins as URLs (`tcp://10.0.2.2:2201`).
    pub fn origin_direct<S: Into<String>>(self, origins: impl IntoIterator<Item = S>) -> Self {
        let origins: Vec<String> = origins.into_iter().map(Into::into).collect();
        self.set("origin_direct", origins)
    }

    /// `origin_dns` (a name and its TTL) with `origin_port` (a port as a
    /// number, or a port or range as a string).
    pub fn origin_dns(self, name: &str, ttl: u32, ports: impl Into<Value>) -> Self {
        self.set("origin_dns", json!({"name": name, "ttl": ttl}))
            .set("origin_port", ports)
    }

    /// `proxy_protocol`: `off`, `v1`, `v2`, `simple`.
    pub fn proxy_protocol(self, mode: &str) -> Self {
        self.set("proxy_protocol", mode)
    }

    pub fn ip_firewall(self, on: bool) -> Self {
        self.set("ip_firewall", on)
    }

    /// Any other field (`tls`, `tls_cert`, `origin_sni`, ...).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }
}

impl From<AppJson> for Value {
    fn from(app: AppJson) -> Self {
        Value::Object(app.0)
    }
}

/// `tcp://<v4>:<ports>` and `tcp://[<v6>]:<ports>` (or `udp`): an origin on
/// `org` by both address families.
pub fn org_both(scheme: &str, ports: impl Display) -> [String; 2] {
    [
        format!("{scheme}://{}:{ports}", addr::ORG_V4),
        format!("{scheme}://[{}]:{ports}", addr::ORG_V6),
    ]
}

/// `<scheme>://<org v4>:<ports>`: an origin on `org` by IPv4.
pub fn org4(scheme: &str, ports: impl Display) -> String {
    format!("{scheme}://{}:{ports}", addr::ORG_V4)
}

fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Writes an API token file as the agent wants it: readable by its owner
/// only (the agent refuses a token group or others may read).
pub fn write_token_file(path: &Path, token: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::write(path, format!("{token}\n")).expect("token file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}
