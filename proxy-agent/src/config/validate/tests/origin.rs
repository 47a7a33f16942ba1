//! Validator tests: origins, PROXY headers, TLS.
use super::*;

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
    let pairs = json!([{"cert": "/b.pem", "key": "/b.key"}, {"cert": "/c.pem", "key": "/c.key"}]);
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
