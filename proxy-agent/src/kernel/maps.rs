//! Config model -> BPF map contents. Pure: no kernel, no I/O, unit-tested.
//!
//! An application's index in `APPS` (and its row of counters) is its
//! slot (`App::slot`): its position in the file when loaded, then kept
//! across live changes while the app is unchanged.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use proxy_common::{
    AppFlags, AppValue, ClientLimitValue, ListenerKey, ListenerValue, MAX_APPS, MAX_LISTENERS,
    MAX_ORIGINS_PER_FAMILY, OriginValue, POOL_V4_PREFIX_BITS, Settings, SettingsFlags, SourceSet,
    ip_proto, origin_index, tc_only_flag,
};

use crate::config::model::{App, ClientLimits, Config, Origin, Protocol};

/// Everything the kernel programs' maps (XDP, TC, sk_lookup) should hold
/// for one config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapContents {
    pub listeners: BTreeMap<ListenerKey, ListenerValue>,
    /// `APPS`, by index; slots past the end are empty.
    pub apps: Vec<AppValue>,
    /// `ORIGINS`, by `origin_index(app, ipv6, slot)`.
    pub origins: BTreeMap<u32, OriginValue>,
    /// `SETTINGS[0]`.
    pub settings: Settings,
    /// `ORIGIN_SOURCES`, by `source_index(ipv6)`.
    pub sources: [SourceSet; 2],
    /// `POOLS`: (prefix length, address) (see [`unlisted`]).
    pub pools: BTreeSet<(u32, [u8; 16])>,
    /// `UNLISTED_PASS`.
    pub unlisted_pass: BTreeSet<ListenerKey>,
    /// `CLIENT_LIMITS`, by index like `apps`.
    pub client_limits: Vec<ClientLimitValue>,
}

/// The config does not fit in the kernel maps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error("{apps} apps configured; the data path holds at most {MAX_APPS}")]
    TooManyApps { apps: usize },
    #[error(
        "the apps need {listeners} (protocol, edge address, port) listeners; \
         the data path holds at most {MAX_LISTENERS}"
    )]
    TooManyListeners { listeners: usize },
    #[error(
        "apps[{app}] has {origins} {family} origins; at most \
         {MAX_ORIGINS_PER_FAMILY} per family"
    )]
    TooManyOrigins {
        app: usize,
        family: &'static str,
        origins: usize,
    },
}

/// The 16-byte address form the maps use (IPv4 mapped into IPv6).
pub fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The map contents for `config`, `origin_dns` apps not yet resolved.
pub fn map_contents(config: &Config) -> Result<MapContents, CapacityError> {
    map_contents_resolved(config, &BTreeMap::new())
}

/// The map contents for `config`, with the addresses `origin_dns` apps
/// resolved to (by slot).
pub fn map_contents_resolved(
    config: &Config,
    resolved: &BTreeMap<u32, Vec<IpAddr>>,
) -> Result<MapContents, CapacityError> {
    let slots_fit = config.apps.iter().all(|app| app.slot < MAX_APPS);
    if config.apps.len() > MAX_APPS as usize || !slots_fit {
        return Err(CapacityError::TooManyApps {
            apps: config.apps.len(),
        });
    }
    let listener_count: usize = config
        .apps
        .iter()
        .map(|app| app.edge_addrs.len() * app.edge_ports.len() as usize)
        .sum();
    if listener_count > MAX_LISTENERS as usize {
        return Err(CapacityError::TooManyListeners {
            listeners: listener_count,
        });
    }

    let (pools, unlisted_pass) = unlisted(config);
    let mut contents = MapContents {
        settings: settings(config),
        sources: origin_sources(config),
        pools,
        unlisted_pass,
        ..MapContents::default()
    };
    let slots = config
        .apps
        .iter()
        .map(|app| app.slot + 1)
        .max()
        .unwrap_or(0);
    contents.apps = vec![AppValue::default(); slots as usize];
    contents.client_limits = vec![ClientLimitValue::default(); slots as usize];
    for app in &config.apps {
        let index = app.slot;
        let ips = resolved.get(&index).map_or(&[][..], Vec::as_slice);
        let origins = app_origins(index, app, ips)?;
        contents.apps[index as usize] = origins.app;
        contents.client_limits[index as usize] = client_limit_value(&app.client_limits);
        contents.origins.extend(origins.slots);
        let proto = app.protocol.ip_proto();
        for addr in &app.edge_addrs {
            for port in app.edge_ports.ports() {
                contents.listeners.insert(
                    ListenerKey::new(proto, addr16(*addr), port),
                    ListenerValue { app: index },
                );
            }
        }
    }
    Ok(contents)
}

/// An app's per-client limits as the kernel reads them.
pub fn client_limit_value(limits: &ClientLimits) -> ClientLimitValue {
    ClientLimitValue::new(
        limits.new_flows_per_second,
        limits.burst,
        limits.concurrent_flows,
        limits.prefix_v4,
        limits.prefix_v6,
    )
}

/// Edge-wide NAT parameters: origin-facing source addresses, NAT ports.
fn settings(config: &Config) -> Settings {
    let source = &config.edge.origin_source;
    let mut settings = Settings {
        nat_port_min: config.edge.nat_ports.start,
        nat_port_max: config.edge.nat_ports.end,
        // Validated to at most a week: fits.
        tcp_new_s: config.edge.flow_timeouts.tcp_new.as_secs() as u32,
        udp_unreplied_s: config.edge.flow_timeouts.udp_unreplied.as_secs() as u32,
        ..Settings::default()
    };
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        if config.tc_only(protocol) {
            settings.flags |= tc_only_flag(protocol.ip_proto());
        }
    }
    if config.unlisted_at_tc() {
        settings.flags |= SettingsFlags::UNLISTED_AT_TC;
    }
    // The first source of each family; the kernel NATs with all of them
    // (`ORIGIN_SOURCES`, [`origin_sources`]).
    if let Some(v4) = source.ipv4.first() {
        settings.source_v4 = addr16(IpAddr::V4(*v4));
        settings.flags |= SettingsFlags::HAS_SOURCE_V4;
    }
    if let Some(v6) = source.ipv6.first() {
        settings.source_v6 = addr16(IpAddr::V6(*v6));
        settings.flags |= SettingsFlags::HAS_SOURCE_V6;
    }
    settings
}

/// `ORIGIN_SOURCES`: each family's origin-facing addresses (validation
/// keeps them at most `MAX_ORIGIN_SOURCES`; more are left out).
pub fn origin_sources(config: &Config) -> [SourceSet; 2] {
    let source = &config.edge.origin_source;
    let set = |addrs: Vec<IpAddr>| {
        let mut set = SourceSet::default();
        for (slot, addr) in set.addrs.iter_mut().zip(addrs) {
            *slot = addr16(addr);
            set.count += 1;
        }
        set
    };
    [
        set(source.ipv4.iter().map(|a| IpAddr::V4(*a)).collect()),
        set(source.ipv6.iter().map(|a| IpAddr::V6(*a)).collect()),
    ]
}

/// `POOLS` (LPM prefix length, 16-byte address) and `UNLISTED_PASS`: the
/// edge's pool prefixes when `edge.unlisted` is `drop` (none otherwise),
/// and the DNS server's and API's sockets on them, which the stack still
/// answers. A socket on the unspecified address is keyed by address zero.
pub fn unlisted(config: &Config) -> (BTreeSet<(u32, [u8; 16])>, BTreeSet<ListenerKey>) {
    let mut pools = BTreeSet::new();
    let mut pass = BTreeSet::new();
    if !config.drops_unlisted() {
        return (pools, pass);
    }
    let pool = &config.edge.address_pool;
    if let Some(v4) = pool.ipv4 {
        let bits = POOL_V4_PREFIX_BITS + u32::from(v4.prefix_len());
        pools.insert((bits, addr16(IpAddr::V4(v4.network()))));
    }
    if let Some(v6) = pool.ipv6 {
        pools.insert((u32::from(v6.prefix_len()), addr16(IpAddr::V6(v6.network()))));
    }
    let key = |proto: u8, addr: SocketAddr| {
        let ip = if addr.ip().is_unspecified() {
            [0; 16]
        } else {
            addr16(addr.ip())
        };
        ListenerKey::new(proto, ip, addr.port())
    };
    for addr in config.dns_server.iter().flat_map(|d| &d.listen) {
        pass.insert(key(ip_proto::UDP, *addr));
        pass.insert(key(ip_proto::TCP, *addr));
    }
    if let Some(api) = &config.api {
        pass.insert(key(ip_proto::TCP, api.listen));
    }
    (pools, pass)
}

fn app_value(app: &App, origins_v4: u8, origins_v6: u8) -> AppValue {
    let mut flags = AppFlags::NONE;
    if app.ip_firewall {
        flags |= AppFlags::IP_FIREWALL;
    }
    if app.fast_path() {
        flags |= AppFlags::FAST_PATH;
        if app.nat_at_tc {
            flags |= AppFlags::TC;
        }
        if app.syn_proxied() {
            flags |= AppFlags::SYN_PROXY;
        }
    }
    AppValue {
        flags,
        edge_port_start: app.edge_ports.start,
        origins_v4,
        origins_v6,
        proto: app.protocol.ip_proto(),
        _pad: [0; 3],
    }
}

/// An app's entry in `APPS` and its `ORIGINS` slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOrigins {
    pub app: AppValue,
    /// (origin_index, value), IPv4 slots then IPv6 slots.
    pub slots: Vec<(u32, OriginValue)>,
}

/// The `APPS` value and `ORIGINS` slots of app `index`: its direct origins,
/// or for an `origin_dns` app the addresses the name resolved to
/// (`resolved`; empty until resolved).
pub fn app_origins(
    index: u32,
    app: &App,
    resolved: &[IpAddr],
) -> Result<AppOrigins, CapacityError> {
    let all: Vec<(IpAddr, u16)> = match &app.origin {
        Origin::Direct(origins) => origins.iter().map(|o| (o.ip, o.ports.start)).collect(),
        Origin::Dns(dns) => resolved.iter().map(|ip| (*ip, dns.ports.start)).collect(),
    };
    let mut counts = [0u8; 2];
    let mut slots = Vec::new();
    for (ipv6, family) in [(false, "IPv4"), (true, "IPv6")] {
        let of_family: Vec<&(IpAddr, u16)> =
            all.iter().filter(|(ip, _)| ip.is_ipv6() == ipv6).collect();
        if of_family.len() > MAX_ORIGINS_PER_FAMILY as usize {
            return Err(CapacityError::TooManyOrigins {
                app: index as usize,
                family,
                origins: of_family.len(),
            });
        }
        counts[ipv6 as usize] = of_family.len() as u8;
        for (slot, (ip, port_start)) in of_family.into_iter().enumerate() {
            slots.push((
                origin_index(index, ipv6, slot as u32),
                OriginValue {
                    addr: addr16(*ip),
                    port_start: *port_start,
                    _pad: [0; 2],
                },
            ));
        }
    }
    Ok(AppOrigins {
        app: app_value(app, counts[0], counts[1]),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use proxy_common::{SettingsFlags, ip_proto};

    fn config(apps: &str) -> Config {
        let text = format!(
            r#"{{"edge": {{"interfaces": ["eth0"],
                "address_pool": {{"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}},
                "origin_source": {{"ipv4": "192.0.2.254", "ipv6": "2001:db8::fe"}},
                "nat_ports": "20000-29999"}},
               "apps": [{apps}]}}"#
        );
        match load_str(&text, false) {
            Ok(loaded) => loaded.config,
            Err(err) => panic!("test config invalid: {err}"),
        }
    }

    #[test]
    fn pools_and_the_agents_own_sockets_for_the_unlisted_drop() {
        let mut config = config("");
        config.dns_server = Some(crate::config::model::DnsServer {
            listen: vec!["198.51.100.53:53".parse().unwrap()],
            zones: vec!["example.com".into()],
            nameserver: "ns.example.com".into(),
            ttl: 30,
        });
        let (pools, pass) = unlisted(&config);
        let v4: IpAddr = "198.51.100.0".parse().unwrap();
        let v6: IpAddr = "2001:db8:e::".parse().unwrap();
        assert_eq!(
            pools,
            BTreeSet::from([(96 + 24, addr16(v4)), (64, addr16(v6))])
        );
        assert_eq!(
            pass,
            BTreeSet::from([
                key(ip_proto::UDP, "198.51.100.53", 53),
                key(ip_proto::TCP, "198.51.100.53", 53),
            ])
        );
        config.edge.unlisted = crate::config::model::Unlisted::Pass;
        assert_eq!(unlisted(&config), (BTreeSet::new(), BTreeSet::new()));
    }

    #[test]
    fn every_origin_source_of_a_family_goes_to_the_kernel() {
        let mut config = config("");
        config.edge.origin_source.ipv4 =
            vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()];
        let [v4, v6] = origin_sources(&config);
        assert_eq!(v4.count, 2);
        assert_eq!(v4.addrs[1], addr16("192.0.2.2".parse().unwrap()));
        assert_eq!(v4.addrs[2], [0; 16]);
        assert_eq!(v6.count, 1);
        // SETTINGS keeps the first of each.
        assert_eq!(
            map_contents(&config).unwrap().settings.source_v4,
            addr16("192.0.2.1".parse().unwrap())
        );
    }

    fn key(proto: u8, ip: &str, port: u16) -> ListenerKey {
        ListenerKey::new(proto, addr16(ip.parse().expect("test address")), port)
    }

    #[test]
    fn a_range_app_gets_one_listener_per_port_and_address() {
        let config = config(
            r#"{"protocol": "tcp/1000-2000", "dns": {"type": "ADDRESS", "name": "r.example.com"},
                "edge_ips": {"type": "static", "ips": ["198.51.100.10", "2001:db8:e::10"]},
                "origin_direct": ["tcp://192.0.2.1:3000-4000"]}"#,
        );
        let maps = map_contents(&config).expect("fits");
        assert_eq!(maps.listeners.len(), 2 * 1001);
        for (ip, port) in [
            ("198.51.100.10", 1000),
            ("198.51.100.10", 2000),
            ("2001:db8:e::10", 1005),
        ] {
            assert_eq!(
                maps.listeners.get(&key(ip_proto::TCP, ip, port)),
                Some(&ListenerValue { app: 0 }),
                "{ip} {port}"
            );
        }
        assert!(
            !maps
                .listeners
                .contains_key(&key(ip_proto::TCP, "198.51.100.10", 999))
        );
        assert!(
            !maps
                .listeners
                .contains_key(&key(ip_proto::TCP, "198.51.100.10", 2001))
        );
        assert!(
            !maps
                .listeners
                .contains_key(&key(ip_proto::UDP, "198.51.100.10", 1000))
        );
        assert_eq!(
            maps.apps,
            vec![AppValue {
                flags: AppFlags::FAST_PATH | AppFlags::SYN_PROXY,
                edge_port_start: 1000,
                origins_v4: 1,
                origins_v6: 0,
                proto: ip_proto::TCP,
                _pad: [0; 3],
            }]
        );
        let origin = maps
            .origins
            .get(&origin_index(0, false, 0))
            .expect("origin 0");
        assert_eq!(origin.addr, addr16("192.0.2.1".parse().expect("ip")));
        assert_eq!(origin.port_start, 3000);
        assert_eq!(
            maps.settings,
            Settings {
                source_v4: addr16("192.0.2.254".parse().expect("ip")),
                source_v6: addr16("2001:db8::fe".parse().expect("ip")),
                nat_port_min: 20000,
                nat_port_max: 29999,
                flags: SettingsFlags::HAS_SOURCE_V4 | SettingsFlags::HAS_SOURCE_V6,
                // The embryonic timeouts' defaults.
                tcp_new_s: 5,
                udp_unreplied_s: 5,
            }
        );
    }

    #[test]
    fn apps_are_indexed_in_config_order_with_their_flags() {
        let config = config(
            r#"{"protocol": "udp/53", "dns": {"type": "CNAME", "name": "dns.example.com"},
                "origin_direct": ["udp://192.0.2.53:53", "udp://[2001:db8::53]:5353"]},
               {"protocol": "tcp/443", "dns": {"type": "CNAME", "name": "tls.example.com"},
                "tls": "flexible", "tls_cert": "c.pem", "tls_key": "k.pem", "ip_firewall": true,
                "origin_dns": {"name": "origin.example.com", "ttl": 600}, "origin_port": 8443}"#,
        );
        let maps = map_contents(&config).expect("fits");
        assert_eq!(maps.apps.len(), 2);
        assert_eq!(maps.apps[0].flags, AppFlags::FAST_PATH);
        assert_eq!((maps.apps[0].origins_v4, maps.apps[0].origins_v6), (1, 1));
        assert_eq!(maps.apps[0].proto, ip_proto::UDP);
        assert_eq!(
            maps.apps[1].flags,
            AppFlags::IP_FIREWALL,
            "TLS apps are not fast path"
        );
        assert_eq!(
            (maps.apps[1].origins_v4, maps.apps[1].origins_v6),
            (0, 0),
            "DNS origins wait for resolution"
        );
        assert_eq!(
            maps.origins
                .get(&origin_index(0, true, 0))
                .map(|o| o.port_start),
            Some(5353)
        );
        // Each dynamic app got one v4 and one v6 address: 2 listeners each.
        let app1: Vec<_> = maps.listeners.values().filter(|v| v.app == 1).collect();
        assert_eq!(app1.len(), 2);
        let ports: Vec<_> = maps
            .listeners
            .iter()
            .filter(|(_, v)| v.app == 0)
            .map(|(k, _)| (k.proto, k.port))
            .collect();
        assert_eq!(ports, vec![(ip_proto::UDP, 53), (ip_proto::UDP, 53)]);
    }

    #[test]
    fn apps_natted_at_tc_carry_the_tc_flag_only_on_the_fast_path() {
        let text = format!(
            r#"{{"edge": {{"interfaces": ["eth0"], "datapath": "auto",
                "address_pool": {{"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}}}},
               "apps": [{}, {}, {}]}}"#,
            r#"{"protocol": "tcp/22", "dns": {"type": "CNAME", "name": "ssh.example.com"},
                "origin_direct": ["tcp://192.0.2.1:22"]}"#,
            r#"{"protocol": "udp/53", "dns": {"type": "CNAME", "name": "dns.example.com"},
                "origin_direct": ["udp://192.0.2.53:53"]}"#,
            r#"{"protocol": "tcp/25", "dns": {"type": "CNAME", "name": "mail.example.com"},
                "origin_direct": ["tcp://192.0.2.1:25"], "proxy_protocol": "v1"}"#,
        );
        let config = load_str(&text, false).expect("valid").config;
        let maps = map_contents(&config).expect("fits");
        let flags: Vec<AppFlags> = maps.apps.iter().map(|a| a.flags).collect();
        assert_eq!(
            flags,
            vec![
                AppFlags::FAST_PATH | AppFlags::TC | AppFlags::SYN_PROXY,
                AppFlags::FAST_PATH,
                AppFlags::NONE
            ],
            "TCP at TC under auto, UDP in XDP, the agent's app neither"
        );
    }

    /// `AppFlags::SYN_PROXY`: fast-path TCP apps with `syn_proxy` on (the
    /// default, per app over the edge's), never UDP or the agent's apps.
    #[test]
    fn the_syn_proxy_flag_follows_the_config_on_fast_path_tcp_apps() {
        let flags = |edge: &str, apps: &[&str]| {
            let text = format!(
                r#"{{"edge": {{"interfaces": ["eth0"]{edge},
                    "address_pool": {{"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}}}},
                   "apps": [{}]}}"#,
                apps.join(",")
            );
            let config = load_str(&text, false).expect("valid").config;
            let maps = map_contents(&config).expect("fits");
            let flags: Vec<bool> = (maps.apps.iter())
                .map(|a| a.flags.contains(AppFlags::SYN_PROXY))
                .collect();
            flags
        };
        const SSH: &str = r#"{"protocol": "tcp/22", "dns": {"type": "CNAME", "name": "ssh.example.com"},
            "origin_direct": ["tcp://192.0.2.1:22"]}"#;
        const SSH_OFF: &str = r#"{"protocol": "tcp/23", "dns": {"type": "CNAME", "name": "t.example.com"},
            "origin_direct": ["tcp://192.0.2.1:23"], "syn_proxy": "off"}"#;
        const SSH_ON: &str = r#"{"protocol": "tcp/24", "dns": {"type": "CNAME", "name": "u.example.com"},
            "origin_direct": ["tcp://192.0.2.1:24"], "syn_proxy": "on"}"#;
        const DNS: &str = r#"{"protocol": "udp/53", "dns": {"type": "CNAME", "name": "dns.example.com"},
            "origin_direct": ["udp://192.0.2.53:53"]}"#;
        const PP: &str = r#"{"protocol": "tcp/25", "dns": {"type": "CNAME", "name": "mail.example.com"},
            "origin_direct": ["tcp://192.0.2.1:25"], "proxy_protocol": "v1"}"#;
        assert_eq!(
            flags("", &[SSH, SSH_OFF, SSH_ON, DNS, PP]),
            [true, false, true, false, false]
        );
        assert_eq!(
            flags(r#", "syn_proxy": "off""#, &[SSH, SSH_OFF, SSH_ON, DNS, PP]),
            [false, false, true, false, false]
        );
    }

    /// TC ingress is attached for a fast path that runs there, and for the
    /// SYN proxy of an app that runs at XDP (its origin SYN-ACK is finished
    /// at TC); `needs_tc` (TC_ONLY, unlisted at TC) keeps its meaning.
    #[test]
    fn tc_attaches_for_the_syn_proxy_of_xdp_apps_without_taking_over() {
        let config = |datapath: &str, apps: &[&str]| {
            let text = format!(
                r#"{{"edge": {{"interfaces": ["eth0"], "datapath": "{datapath}",
                    "address_pool": {{"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}}}},
                   "apps": [{}]}}"#,
                apps.join(",")
            );
            load_str(&text, false).expect("valid").config
        };
        const SSH: &str = r#"{"protocol": "tcp/22", "dns": {"type": "CNAME", "name": "ssh.example.com"},
            "origin_direct": ["tcp://192.0.2.1:22"]}"#;
        const SSH_OFF: &str = r#"{"protocol": "tcp/22", "dns": {"type": "CNAME", "name": "ssh.example.com"},
            "origin_direct": ["tcp://192.0.2.1:22"], "syn_proxy": "off"}"#;
        const DNS: &str = r#"{"protocol": "udp/53", "dns": {"type": "CNAME", "name": "dns.example.com"},
            "origin_direct": ["udp://192.0.2.53:53"]}"#;
        const TLS: &str = r#"{"protocol": "tcp/443", "dns": {"type": "CNAME", "name": "w.example.com"},
            "origin_direct": ["tcp://192.0.2.1:443"], "tls": "flexible",
            "tls_cert": "c.pem", "tls_key": "k.pem"}"#;
        // A SYN-proxied TCP app at XDP: TC attached, but it has no
        // protocol alone and XDP keeps dropping what no app serves.
        let c = config("xdp", &[SSH]);
        assert!(c.attaches_tc() && !c.needs_tc());
        assert!(!c.tc_only(Protocol::Tcp) && !c.tc_only(Protocol::Udp));
        assert!(!c.unlisted_at_tc() && c.needs_xdp());
        // Its SYN proxy off, UDP or the agent's path: nothing for TC.
        for apps in [&[SSH_OFF][..], &[DNS], &[TLS], &[SSH_OFF, DNS, TLS]] {
            let c = config("xdp", apps);
            assert!(!c.attaches_tc(), "{apps:?}");
        }
        // A fast path at TC attaches it as before, the SYN proxy or not.
        for apps in [&[SSH][..], &[SSH_OFF], &[DNS]] {
            let c = config("tc", apps);
            assert!(c.attaches_tc() && c.needs_tc(), "{apps:?}");
        }
        let c = config("auto", &[SSH_OFF, DNS]);
        assert!(c.attaches_tc() && c.tc_only(Protocol::Tcp));
    }

    /// `SettingsFlags::TC_ONLY_*`: TC has a protocol alone when some app's fast
    /// path runs at TC (TC is attached) and no app of it needs XDP.
    #[test]
    fn tc_has_a_protocol_alone_when_no_app_of_it_needs_xdp() {
        const SSH: &str = r#"{"protocol": "tcp/22", "dns": {"type": "CNAME", "name": "ssh.example.com"},
            "origin_direct": ["tcp://192.0.2.1:22"]}"#;
        const DNS: &str = r#"{"protocol": "udp/53", "dns": {"type": "CNAME", "name": "dns.example.com"},
            "origin_direct": ["udp://192.0.2.53:53"]}"#;
        const MAIL: &str = r#"{"protocol": "tcp/25", "dns": {"type": "CNAME", "name": "mail.example.com"},
            "origin_direct": ["tcp://192.0.2.1:25"], "tls": "flexible",
            "tls_cert": "c.pem", "tls_key": "k.pem", "ip_firewall": true}"#;
        // The config of `apps` under `datapath`, and the settings flags the
        // kernel gets for it.
        let flags_of = |datapath: &str, apps: &[&str]| {
            let text = format!(
                r#"{{"edge": {{"interfaces": ["eth0"], "datapath": "{datapath}",
                    "address_pool": {{"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}}}},
                   "apps": [{}]}}"#,
                apps.join(",")
            );
            let config = load_str(&text, false).expect("valid").config;
            let flags = map_contents(&config).expect("fits").settings.flags;
            (config, flags)
        };
        let alone = |datapath: &str, apps: &[&str]| {
            let (_, flags) = flags_of(datapath, apps);
            (
                flags.contains(SettingsFlags::TC_ONLY_TCP),
                flags.contains(SettingsFlags::TC_ONLY_UDP),
            )
        };
        // TC drops every protocol's unlisted packets only when XDP is not
        // attached: UDP here has only an agent-path app, so TC does not
        // have it alone, yet nothing else would drop it.
        const PP_UDP: &str = r#"{"protocol": "udp/54", "dns": {"type": "CNAME", "name": "pp.example.com"},
            "origin_direct": ["udp://192.0.2.53:54"], "proxy_protocol": "v2"}"#;
        let unlisted_at_tc = |datapath: &str, apps: &[&str]| {
            let (config, flags) = flags_of(datapath, apps);
            assert_eq!(
                config.needs_xdp(),
                !config.unlisted_at_tc() && config.drops_unlisted()
            );
            flags.contains(SettingsFlags::UNLISTED_AT_TC)
        };
        assert!(unlisted_at_tc("tc", &[SSH, PP_UDP]));
        assert!(
            !unlisted_at_tc("auto", &[SSH, DNS]),
            "XDP is attached for UDP"
        );
        assert!(!unlisted_at_tc("xdp", &[PP_UDP]), "no TC: XDP drops");
        assert_eq!(alone("auto", &[SSH, DNS]), (true, false), "UDP in XDP");
        assert_eq!(alone("tc", &[SSH, DNS]), (true, true));
        assert_eq!(alone("xdp", &[SSH, DNS]), (false, false));
        assert_eq!(
            alone("tc", &[SSH, DNS, MAIL]),
            (false, true),
            "the agent app's access rules need XDP for TCP"
        );
        assert_eq!(
            alone("tc", &[MAIL]),
            (false, false),
            "no fast path at TC: TC is not attached"
        );
    }

    #[test]
    fn listeners_beyond_capacity_are_refused() {
        let apps: Vec<String> = (0..5)
            .map(|i| {
                format!(
                    r#"{{"protocol": "tcp/1-65535", "dns": {{"type": "CNAME", "name": "a{i}.example.com"}},
                        "origin_direct": ["tcp://192.0.2.1:1-65535"]}}"#
                )
            })
            .collect();
        let config = config(&apps.join(","));
        assert_eq!(
            map_contents(&config),
            Err(CapacityError::TooManyListeners {
                listeners: 5 * 2 * 65535
            })
        );
    }

    #[test]
    fn resolved_dns_origins_fill_slots_per_family() {
        let config = config(
            r#"{"protocol": "tcp/1000-1010", "dns": {"type": "CNAME", "name": "r.example.com"},
                "origin_dns": {"name": "origin.example.com", "ttl": 600}, "origin_port": "3000-3010"}"#,
        );
        let app = &config.apps[0];
        let ips: Vec<IpAddr> = ["192.0.2.1", "2001:db8::1", "192.0.2.2"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        let origins = app_origins(0, app, &ips).expect("fits");
        assert_eq!((origins.app.origins_v4, origins.app.origins_v6), (2, 1));
        let slots: Vec<(u32, u16)> = origins
            .slots
            .iter()
            .map(|(index, o)| (*index, o.port_start))
            .collect();
        assert_eq!(
            slots,
            vec![
                (origin_index(0, false, 0), 3000),
                (origin_index(0, false, 1), 3000),
                (origin_index(0, true, 0), 3000)
            ]
        );
        assert_eq!(origins.slots[2].1.addr, addr16(ips[1]));
        let unresolved = app_origins(0, app, &[]).expect("fits");
        assert!(unresolved.slots.is_empty());
        assert_eq!(unresolved.app.origin_count(false), 0);
    }

    #[test]
    fn addr16_maps_ipv4() {
        let a = addr16("192.0.2.1".parse().expect("ip"));
        assert_eq!(a, proxy_common::v4_mapped([192, 0, 2, 1]));
    }
}
