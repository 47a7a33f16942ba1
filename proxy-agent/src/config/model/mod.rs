//! The validated configuration: what the rest of the agent works from.
//!
//! Values here have been checked by `validate()`; nothing builds them from
//! the file directly, and nothing changes them in place.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod app;
mod error;
mod rule;
mod settings;

pub use app::*;
pub use error::*;
pub use rule::*;
pub use settings::*;

pub use super::client_limits::ClientLimits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub edge: Edge,
    pub apps: Vec<App>,
    pub access_rules: Vec<AccessRule>,
    /// The embedded authoritative DNS server; `None`: not started.
    pub dns_server: Option<DnsServer>,
    /// The management API; `None`: not started.
    pub api: Option<Api>,
}

impl Config {
    /// Whether XDP has work: an app whose fast path runs there, or an app
    /// whose clients the access rules (applied in XDP, before anything
    /// else) must check. Without either, XDP stays detached: on some
    /// drivers (veth) merely having an XDP program costs a fifth of TCP
    /// throughput.
    ///
    /// With `edge.unlisted: drop` and an address pool, XDP is attached
    /// even then, unless TC ingress is: one of them drops what no app
    /// serves on the pool's addresses ([`Config::unlisted_at_tc`]).
    pub fn needs_xdp(&self) -> bool {
        self.apps_need_xdp() || (self.drops_unlisted() && !self.needs_tc())
    }

    /// Whether an app needs XDP (its fast path, or its access rules).
    pub fn apps_need_xdp(&self) -> bool {
        self.apps.iter().any(App::needs_xdp)
    }

    /// Whether TC ingress drops the unlisted packets of every protocol:
    /// no app needs XDP, so it stays detached, and TC is attached.
    pub fn unlisted_at_tc(&self) -> bool {
        self.drops_unlisted() && self.needs_tc() && !self.apps_need_xdp()
    }

    /// Whether the kernel drops unlisted packets: `edge.unlisted` is
    /// `drop` and there is a pool whose addresses it applies to.
    pub fn drops_unlisted(&self) -> bool {
        let pool = &self.edge.address_pool;
        self.edge.unlisted == Unlisted::Drop && (pool.ipv4.is_some() || pool.ipv6.is_some())
    }

    /// Whether TC ingress alone handles `protocol`: some app's fast path
    /// runs at TC (so the TC program is attached) and no app of that
    /// protocol needs XDP. XDP, when attached for the other protocol,
    /// then passes this one at once: on veth, a flow lookup per 1.5 KB
    /// frame costs about 8% of TCP throughput under `auto`.
    pub fn tc_only(&self, protocol: Protocol) -> bool {
        self.needs_tc()
            && !self
                .apps
                .iter()
                .any(|app| app.protocol == protocol && app.needs_xdp())
    }

    /// Whether some app's fast path runs at TC ingress.
    pub fn needs_tc(&self) -> bool {
        self.apps.iter().any(|app| app.fast_path() && app.nat_at_tc)
    }

    /// Whether the TC-ingress program is attached: some app's fast path
    /// runs there ([`Config::needs_tc`]), or a SYN-proxied app's runs at
    /// XDP: XDP cannot send the two packets an origin's SYN-ACK turns into
    /// (the ACK back to the origin, the window update to the client), so it
    /// hands that SYN-ACK up to TC. TC attached for that alone handles no
    /// other packet of XDP's, so `tc_only` and `unlisted_at_tc` keep asking
    /// `needs_tc`.
    pub fn attaches_tc(&self) -> bool {
        self.needs_tc() || (self.apps.iter()).any(|app| app.syn_proxied() && !app.nat_at_tc)
    }

    /// The app whose kernel rows are slot `slot`, if one runs there.
    pub fn app_in_slot(&self, slot: u32) -> Option<&App> {
        self.apps.iter().find(|app| app.slot == slot)
    }

    /// Makes the relative paths the config names (TLS cert/key, GeoIP
    /// databases) relative to `base`, the directory of the config file, so
    /// a config means the same whatever the agent's working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut Option<PathBuf>| {
            if let Some(p) = path.as_mut()
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.edge.geoip.country_db);
        if let Some(api) = &mut self.api {
            if api.token_file.is_relative() {
                api.token_file = base.join(&api.token_file);
            }
            if let Some(tls) = &mut api.tls {
                for path in [&mut tls.cert, &mut tls.key] {
                    if path.is_relative() {
                        *path = base.join(&*path);
                    }
                }
            }
        }
        resolve(&mut self.edge.geoip.asn_db);
        if self.edge.state_dir.is_relative() {
            self.edge.state_dir = base.join(&self.edge.state_dir);
        }
        for app in &mut self.apps {
            resolve(&mut app.tls_cert);
            resolve(&mut app.tls_key);
            for (cert, key) in &mut app.tls_sni_certs {
                for path in [cert, key] {
                    if path.is_relative() {
                        *path = base.join(&*path);
                    }
                }
            }
            resolve(&mut app.origin_ca);
        }
    }

    /// Files the config names (TLS cert/key, GeoIP databases) that cannot
    /// be read: one ConfigError each (field = the path field, value = the
    /// path, reason = the io error).
    pub fn check_files(&self) -> Vec<ConfigError> {
        let geoip = [
            (
                "edge.geoip.country_db".to_string(),
                &self.edge.geoip.country_db,
            ),
            ("edge.geoip.asn_db".to_string(), &self.edge.geoip.asn_db),
        ];
        let tls = self.apps.iter().enumerate().flat_map(|(i, app)| {
            let sni = app
                .tls_sni_certs
                .iter()
                .enumerate()
                .flat_map(move |(j, (cert, key))| {
                    [
                        (format!("apps[{i}].tls_sni_certs[{j}].cert"), Some(cert)),
                        (format!("apps[{i}].tls_sni_certs[{j}].key"), Some(key)),
                    ]
                });
            [
                (format!("apps[{i}].tls_cert"), app.tls_cert.as_ref()),
                (format!("apps[{i}].tls_key"), app.tls_key.as_ref()),
                (format!("apps[{i}].origin_ca"), app.origin_ca.as_ref()),
            ]
            .into_iter()
            .chain(sni)
        });
        let geoip = geoip.map(|(field, path)| (field, path.as_ref()));
        let api = (
            "api.token_file".to_string(),
            self.api.as_ref().map(|a| &a.token_file),
        );
        // GeoIP databases are tens of MiB; the rest is PEM or a token.
        let geoip = geoip.map(|(field, path)| (field, path, u64::MAX));
        let api_tls = self.api.as_ref().and_then(|a| a.tls.as_ref());
        let api_tls = [
            ("api.tls_cert".to_string(), api_tls.map(|t| &t.cert)),
            ("api.tls_key".to_string(), api_tls.map(|t| &t.key)),
        ];
        let small = std::iter::once(api)
            .chain(api_tls)
            .chain(tls)
            .map(|(field, path)| (field, path, crate::files::PEM_LIMIT));
        geoip
            .into_iter()
            .chain(small)
            .filter_map(|(field, path, limit)| {
                let path = path.map(PathBuf::as_path)?;
                let reason = unreadable(path, limit)?;
                Some(ConfigError::new(field, path.display().to_string(), reason))
            })
            .collect()
    }
}

/// Why `path` cannot be read as a file, or None when it can: the checks of
/// the agent's one reader ([`crate::files`]), without reading (a FIFO or a
/// device is refused, not waited on; a symlink is refused).
fn unreadable(path: &Path, limit: u64) -> Option<String> {
    crate::files::check_regular(path, limit)
        .err()
        .map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_128_published_vectors() {
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }

    #[test]
    fn app_id_round_trip_and_case() {
        let id: AppId = "0123456789ABCDEF0123456789abcdef".parse().unwrap();
        assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
        assert_eq!(format!("{id:?}"), "0123456789abcdef0123456789abcdef");
        assert_eq!(id.0[0], 0x01);
        assert_eq!(id.0[15], 0xef);
        for bad in [
            "",
            "0123",
            "0123456789abcdef0123456789abcdeg",
            "+123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(bad.parse::<AppId>(), Err(ParseAppIdError), "{bad:?}");
        }
        // 32 bytes but not 32 ASCII digits
        assert!("é123456789abcdef0123456789abcde".parse::<AppId>().is_err());
    }

    #[test]
    fn generated_id_normalises_name() {
        let r = PortRange::new(1000, 2000);
        let a = AppId::generated(Protocol::Tcp, r, "Range.Example.com.");
        let b = AppId::generated(Protocol::Tcp, r, "range.example.com");
        assert_eq!(a, b);
        assert_ne!(a, AppId::generated(Protocol::Udp, r, "range.example.com"));
        assert_ne!(
            a,
            AppId::generated(Protocol::Tcp, PortRange::single(1000), "range.example.com")
        );
    }

    #[test]
    fn port_range_basics() {
        let r = PortRange::new(1000, 2000);
        assert_eq!(r.len(), 1001);
        assert!(!r.is_empty());
        assert!(r.contains(1000) && r.contains(2000));
        assert!(!r.contains(999) && !r.contains(2001));
        assert_eq!(r.offset_of(1000), Some(0));
        assert_eq!(r.offset_of(2000), Some(1000));
        assert_eq!(r.offset_of(2001), None);
        assert_eq!(r.to_string(), "1000-2000");
        assert_eq!(PortRange::single(22).to_string(), "22");
        assert_eq!(PortRange::new(0, 65535).len(), 65536);
        assert_eq!(PortRange::new(5, 4).len(), 0);
        assert_eq!(
            r.intersection(&PortRange::new(1500, 2500)),
            Some(PortRange::new(1500, 2000))
        );
        assert_eq!(r.intersection(&PortRange::new(2001, 2500)), None);
        assert_eq!(Protocol::Tcp.ip_proto(), 6);
        assert_eq!(Protocol::Udp.ip_proto(), 17);
    }

    fn app(edge_ports: PortRange, tls: TlsMode, pp: ProxyProtocol) -> App {
        App {
            datapath: None,
            nat_at_tc: false,
            client_limits: ClientLimits::default(),
            syn_proxy: true,
            slot: 0,
            created_on: None,
            modified_on: None,
            id: AppId([0; 16]),
            protocol: Protocol::Tcp,
            edge_ports,
            dns: Dns {
                kind: DnsKind::Cname,
                name: "a.example.com".into(),
            },
            edge_addrs: vec![],
            edge_ips_dynamic: false,
            origin: Origin::Direct(vec![]),
            proxy_protocol: pp,
            proxy_header_every_datagram: false,
            tls,
            tls_cert: None,
            tls_key: None,
            tls_sni_certs: Vec::new(),
            origin_sni: None,
            origin_ca: None,
            ip_firewall: false,
        }
    }

    #[test]
    fn origin_port_for_maps_both_ends() {
        let a = app(PortRange::new(1000, 2000), TlsMode::Off, ProxyProtocol::Off);
        let origin = PortRange::new(3000, 4000);
        assert_eq!(a.origin_port_for(origin, 1000), Some(3000));
        assert_eq!(a.origin_port_for(origin, 2000), Some(4000));
        assert_eq!(a.origin_port_for(origin, 1500), Some(3500));
        assert_eq!(a.origin_port_for(origin, 999), None);
        assert_eq!(a.origin_port_for(origin, 2001), None);
        // An origin range shorter than the edge range never maps past its end.
        assert_eq!(a.origin_port_for(PortRange::single(3000), 1001), None);
        let top = app(
            PortRange::new(65000, 65535),
            TlsMode::Off,
            ProxyProtocol::Off,
        );
        assert_eq!(
            top.origin_port_for(PortRange::new(65000, 65535), 65535),
            Some(65535)
        );
    }

    #[test]
    fn fast_path_needs_tls_off_and_no_header() {
        let r = PortRange::single(22);
        assert!(app(r, TlsMode::Off, ProxyProtocol::Off).fast_path());
        assert!(!app(r, TlsMode::Full, ProxyProtocol::Off).fast_path());
        assert!(!app(r, TlsMode::Off, ProxyProtocol::V2).fast_path());
    }

    #[test]
    fn display_is_one_line_with_code_field_value() {
        let e = ConfigError::with_code(11000, "apps[0].origin_direct", "a\nb", "exactly one");
        assert_eq!(
            e.to_string(),
            r#"apps[0].origin_direct: "a\nb": error 11000: exactly one"#
        );
        let e = ConfigError::new("edge.interfaces", "", "must not be empty");
        assert_eq!(e.to_string(), r#"edge.interfaces: "": must not be empty"#);
        let w = Warning::new("apps[0].origin_dns.ttl", "60", "raised to 600");
        assert_eq!(
            w.to_string(),
            r#"apps[0].origin_dns.ttl: "60": warning: raised to 600"#
        );
    }

    #[test]
    fn check_files_reports_unreadable_paths() {
        let dir = std::env::temp_dir().join(format!("cfg-check-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "x").unwrap();
        let mut a = app(PortRange::single(443), TlsMode::Full, ProxyProtocol::Off);
        a.tls_cert = Some(cert.clone());
        a.tls_key = Some(dir.join("missing-key.pem"));
        a.tls_sni_certs = vec![(cert.clone(), dir.join("missing-sni-key.pem"))];
        let config = Config {
            edge: Edge {
                interfaces: vec!["eth0".into()],
                xdp_mode: None,
                datapath: DatapathMode::Xdp,
                address_pool: AddressPool::default(),
                lease_file: None,
                origin_source: OriginSource::default(),
                geoip: GeoIp {
                    country_db: Some(dir.clone()),
                    asn_db: None,
                },
                nat_ports: DEFAULT_NAT_PORTS,
                unlisted: Unlisted::Drop,
                resolver: None,
                flow_timeouts: FlowTimeouts::default(),
                tcp_proxy: TcpProxy::default(),
                udp_proxy: UdpProxy::default(),
                client_limits: ClientLimits::default(),
                syn_proxy: true,
                allow_rx_vlan_offload: false,
                state_dir: DEFAULT_STATE_DIR.into(),
            },
            apps: vec![a],
            access_rules: vec![],
            dns_server: None,
            api: None,
        };
        let errors = config.check_files();
        std::fs::remove_dir_all(&dir).unwrap();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "edge.geoip.country_db",
                "apps[0].tls_key",
                "apps[0].tls_sni_certs[0].key"
            ]
        );
        assert_eq!(errors[0].reason, "not a regular file");
        assert!(errors[1].value.ends_with("missing-key.pem"));
        assert_eq!(errors[1].reason, "not found", "{}", errors[1]);
    }
}
