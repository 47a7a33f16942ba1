//! The validator's tests: the shared helpers and the checks of apps as a
//! whole here, one file per concern beside.
use super::*;
use crate::config::model::fnv1a_128;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, Ipv6Addr};

mod addresses;
mod edge;
mod origin;
mod rules;

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

fn rules(rules: Value) -> Value {
    let mut file = config(vec![]);
    file["access_rules"] = rules;
    file
}

fn rule(mode: &str, target: &str, value: &str) -> Value {
    json!({"mode": mode, "configuration": {"target": target, "value": value}})
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
fn origin_sources_one_or_a_list() {
    let edge = |extra: Value| {
        let mut file = json!({"edge": {"interfaces": ["eth0"]}});
        for (key, value) in extra.as_object().unwrap() {
            file["edge"][key] = value.clone();
        }
        file
    };
    let (config_, _) = accepted(edge(json!({"origin_source": {
        "ipv4": ["10.1.0.1", "10.1.0.2"], "ipv6": "fd00:1::1"}})));
    assert_eq!(
        config_.edge.origin_source.ipv4,
        [Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2)]
    );
    assert_eq!(config_.edge.origin_source.ipv6.len(), 1);
    only_error(
        edge(json!({"origin_source": {"ipv4": ["10.1.0.1", "fd00::1"]}})),
        None,
        "edge.origin_source.ipv4[1]",
        "fd00::1",
        "IPv4",
    );
    only_error(
        edge(json!({"origin_source": {"ipv4": ["10.1.0.1", "10.1.0.1"]}})),
        None,
        "edge.origin_source.ipv4[1]",
        "10.1.0.1",
        "listed twice",
    );
    only_error(
        edge(json!({"origin_source": {"ipv4": []}})),
        None,
        "edge.origin_source.ipv4",
        "[]",
        "empty list",
    );
    let nine: Vec<String> = (1..=9).map(|k| format!("10.1.0.{k}")).collect();
    only_error(
        edge(json!({"origin_source": {"ipv4": nine}})),
        None,
        "edge.origin_source.ipv4",
        "9",
        "at most 8",
    );
}

#[test]
fn unlisted_and_nat_ports_checked() {
    let edge = |extra: Value| {
        let mut file = json!({"edge": {"interfaces": ["eth0"]}});
        for (key, value) in extra.as_object().unwrap() {
            file["edge"][key] = value.clone();
        }
        file
    };
    let (config_, warnings) = accepted(edge(json!({"unlisted": "pass"})));
    assert_eq!(config_.edge.unlisted, Unlisted::Pass);
    assert!(warnings.is_empty(), "{warnings:?}");
    only_error(
        edge(json!({"unlisted": "reject"})),
        None,
        "edge.unlisted",
        "reject",
        "drop or pass",
    );
    let (_, warnings) = accepted(edge(json!({"nat_ports": "20000-20063"})));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0].field.as_str(), warnings[0].value.as_str()),
        ("edge.nat_ports", "20000-20063")
    );
    assert!(
        warnings[0].message.contains("only 64 ports"),
        "{warnings:?}"
    );
    let (_, warnings) = accepted(edge(json!({"nat_ports": "100-30000"})));
    assert!(
        warnings.iter().any(|w| w.message.contains("below 1024")),
        "{warnings:?}"
    );
    // The API on all addresses, its port inside the NAT's range.
    let mut file = edge(json!({"nat_ports": "2000-9999"}));
    file["api"] = json!({"listen": "0.0.0.0:8080", "token_file": "/t", "zone": "z"});
    only_error(
        file,
        None,
        "edge.nat_ports",
        "2000-9999",
        "holds port 8080 of api.listen",
    );
    // On an address that is not an origin source: no collision.
    let mut file = edge(json!({"nat_ports": "2000-9999",
        "origin_source": {"ipv4": "10.1.0.1"}}));
    file["api"] = json!({"listen": "127.0.0.1:8080", "token_file": "/t", "zone": "z"});
    accepted(file);
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
