//! Validator tests: the edge section.
use super::*;

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
    assert_eq!(
        model.edge.flow_timeouts.udp_unreplied,
        std::time::Duration::from_secs(5)
    );
    file["edge"]["flow_timeouts"] = json!({"tcp_new": 0});
    let errors = refused(file.clone());
    assert_eq!(errors[0].field, "edge.flow_timeouts.tcp_new");
    file["edge"]["flow_timeouts"] = json!({"udp_unreplied": 0});
    let errors = refused(file);
    assert_eq!(errors[0].field, "edge.flow_timeouts.udp_unreplied");
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
fn syn_proxy_on_by_default_edge_default_app_override_and_errors() {
    let second = |file: &mut Value| {
        file["apps"][1]["protocol"] = json!("tcp/23");
        file["apps"][1]["dns"]["name"] = json!("other.example.com");
    };
    let mut file = config(vec![tcp_app(), tcp_app()]);
    second(&mut file);
    let (model, warnings) = accepted(file.clone());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(model.edge.syn_proxy, "on by default");
    assert!(model.apps.iter().all(|a| a.syn_proxy && a.syn_proxied()));
    // The edge's value is every app's default; an app's own wins.
    file["edge"]["syn_proxy"] = json!("off");
    file["apps"][1]["syn_proxy"] = json!("on");
    let (model, _) = accepted(file.clone());
    assert!(!model.edge.syn_proxy);
    let own: Vec<bool> = model.apps.iter().map(|a| a.syn_proxy).collect();
    assert_eq!(own, [false, true]);
    file["edge"]["syn_proxy"] = json!("on");
    file["apps"][1]["syn_proxy"] = json!("off");
    let (model, _) = accepted(file.clone());
    let own: Vec<bool> = model.apps.iter().map(|a| a.syn_proxy).collect();
    assert_eq!(own, [true, false]);
    // Only "on" and "off", named with the field.
    only_error(
        with(config(vec![]), "edge", {
            let mut edge = config(vec![])["edge"].clone();
            edge["syn_proxy"] = json!("yes");
            edge
        }),
        None,
        "edge.syn_proxy",
        "yes",
        "unknown syn_proxy; expected on or off",
    );
    file["apps"][1]["syn_proxy"] = json!("On");
    only_error(file, None, "apps[1].syn_proxy", "On", "expected on or off");
    // Not a string: the file's shape refuses it.
    let mut file = config(vec![tcp_app(), with(tcp_app(), "syn_proxy", json!(true))]);
    second(&mut file);
    assert!(serde_json::from_value::<ConfigFile>(file).is_err());
}

#[test]
fn syn_proxy_applies_to_fast_path_tcp_apps_only_and_says_so_when_written() {
    let tls_app = with(
        with(
            with(tcp_app(), "tls", json!("flexible")),
            "tls_cert",
            json!("/c.pem"),
        ),
        "tls_key",
        json!("/k.pem"),
    );
    let tls_app = with(tls_app, "protocol", json!("tcp/443"));
    let (model, warnings) = accepted(config(vec![tcp_app(), udp_app(), tls_app.clone()]));
    let applied: Vec<bool> = model.apps.iter().map(|a| a.syn_proxied()).collect();
    assert_eq!(applied, [true, false, false]);
    assert!(warnings.is_empty(), "the default is no one's mistake");
    let file = config(vec![
        with(udp_app(), "syn_proxy", json!("on")),
        with(tls_app, "syn_proxy", json!("on")),
    ]);
    let (model, warnings) = accepted(file);
    assert!(model.apps.iter().all(|a| !a.syn_proxied()));
    let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(fields, ["apps[0].syn_proxy", "apps[1].syn_proxy"]);
    assert!(
        warnings[0].message.contains("has no effect"),
        "{warnings:?}"
    );
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
        errors.iter().any(
            |e| e.field == "apps[0].edge_ips.ips[0]" && e.reason.contains("write 198.51.100.5")
        ),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.field == "apps[0].origin_direct[0]" && e.reason.contains("write 192.0.2.1")),
        "{errors:?}"
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
    assert_eq!(e.origin_source.ipv4, [Ipv4Addr::new(10, 1, 0, 1)]);
    assert_eq!(
        e.origin_source.ipv6,
        ["fd00:1::1".parse::<std::net::Ipv6Addr>().unwrap()]
    );
    assert_eq!(e.unlisted, Unlisted::Drop);
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
