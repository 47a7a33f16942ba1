//! Starting each system with an equivalent config, generated here (no
//! hand-edited files): the same ports on the edge address, the same
//! origins, the same certificates.
use std::{path::Path, path::PathBuf, time::Duration};

use ::tests::{
    agent::Agent,
    netns::{Netns, addr, run_checked},
    process::Background,
    servers,
};

use super::{
    Bed, Datapath, ECHO_PORT, EDGE_IP, HTTP_PORT, IPERF_PORT, KeyKind, System, TLS_ECDSA_PORT,
    TLS_RSA_PORT, wait_for_line,
};

/// A certificate and key per key type (self-signed, `bench.test`), and the
/// combined PEM HAProxy wants.
pub struct TlsFiles {
    pub ecdsa: (PathBuf, PathBuf),
    pub rsa: (PathBuf, PathBuf),
}

impl TlsFiles {
    pub fn new(work: &Path) -> anyhow::Result<TlsFiles> {
        let make = |name: &str, key_args: &[&str]| -> anyhow::Result<(PathBuf, PathBuf)> {
            let cert = work.join(format!("{name}.crt"));
            let key = work.join(format!("{name}.key"));
            let (cert_s, key_s) = (cert.to_string_lossy(), key.to_string_lossy());
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
            args.extend_from_slice(key_args);
            args.extend_from_slice(&[
                "-keyout",
                &key_s,
                "-out",
                &cert_s,
                "-subj",
                "/CN=bench.test",
                "-addext",
                "subjectAltName=DNS:bench.test",
            ]);
            run_checked(std::process::Command::new("openssl").args(&args))?;
            // HAProxy: certificate and key in one file.
            let both = std::fs::read_to_string(&cert)? + &std::fs::read_to_string(&key)?;
            std::fs::write(work.join(format!("{name}.pem")), both)?;
            Ok((cert, key))
        };
        Ok(TlsFiles {
            ecdsa: make(
                "ecdsa",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            )?,
            rsa: make("rsa", &["-newkey", "rsa:2048"])?,
        })
    }

    pub fn pair(&self, kind: KeyKind) -> &(PathBuf, PathBuf) {
        match kind {
            KeyKind::EcdsaP256 => &self.ecdsa,
            KeyKind::Rsa2048 => &self.rsa,
        }
    }

    fn haproxy_pem(&self, kind: KeyKind) -> PathBuf {
        self.pair(kind).0.with_extension("pem")
    }
}

/// The listen backlog of every TCP listener the bench configures (the
/// peers' and the origins'): what a deployment expecting floods sets, and
/// no more than [`deployment_sysctls`]' `somaxconn`, which would cap it.
/// With `tcp_syncookies` 1 the kernel answers with SYN cookies once this
/// many handshakes are pending, so a flood cannot fill the queue.
pub const LISTEN_BACKLOG: u32 = 4096;

/// The TCP settings of a host that serves the internet, set explicitly in
/// `ns` (the edge, for HAProxy's and nginx's listeners; the origin) rather
/// than left to a new namespace's defaults: SYN cookies when a listener's
/// queue overflows (1: the kernel's default, not 2, which would send them
/// always and lose the options a cookie without timestamps cannot carry),
/// and queues of [`LISTEN_BACKLOG`].
pub fn deployment_sysctls(ns: &Netns) -> anyhow::Result<()> {
    for setting in [
        "net.ipv4.tcp_syncookies=1".to_owned(),
        format!("net.core.somaxconn={LISTEN_BACKLOG}"),
        format!("net.ipv4.tcp_max_syn_backlog={LISTEN_BACKLOG}"),
    ] {
        ns.run("sysctl", &["-qw", &setting])?;
    }
    Ok(())
}

/// An HTTP origin answering `ok` and closing, for the connection and TLS
/// rates.
pub fn nginx_origin(org: &Netns, work: &Path) -> anyhow::Result<Background> {
    let config = format!(
        "worker_processes 1;\nevents {{ worker_connections 8192; }}\n\
         http {{ access_log off; server {{ listen {org}:{HTTP_PORT} reuseport \
         backlog={LISTEN_BACKLOG}; \
         keepalive_timeout 0; location / {{ return 200 \"ok\\n\"; }} }} }}\n",
        org = addr::ORG_V4,
    );
    let server = servers::nginx(org, "nginx-origin", &work.join("nginx-origin"), &config)?;
    servers::wait_listening(org, "t", HTTP_PORT)?;
    Ok(server)
}

/// What keeps a system running while it is measured.
pub enum Running {
    Nothing,
    Process(Background),
    Agent(Agent),
}

impl Running {
    /// The proxy's process id (nginx: its master), if it has one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Running::Nothing => None,
            Running::Process(process) => process.pid(),
            Running::Agent(agent) => agent.pid(),
        }
    }

    /// Stops the system; its log is shown when it did not stop cleanly.
    pub fn stop(self) {
        let stopped = match self {
            Running::Nothing => return,
            Running::Process(process) => process.stop(Duration::from_secs(5)),
            Running::Agent(agent) => {
                if let Ok(rows) = agent.stats() {
                    for row in rows {
                        println!(
                            "  counter: app {} {} {} packets",
                            row["app"], row["verdict"], row["packets"]
                        );
                    }
                }
                agent.stop()
            }
        };
        match stopped {
            Ok((status, _)) if status.success() || status.code() == Some(143) => {}
            Ok((status, log)) => println!("  stopped with {status}:\n{log}"),
            Err(err) => println!("  could not stop: {err:#}"),
        }
    }
}

pub fn start(system: System, bed: &Bed) -> anyhow::Result<Running> {
    let edge = &bed.topology.edge;
    let helper = bed.release.join("bench-helper");
    let router = |command: &str, ready: &str| -> anyhow::Result<Running> {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.extend([addr::EDGE_CLI_IF, addr::EDGE_ORG_IF]);
        let mut process = edge.spawn(args[0], &helper.to_string_lossy(), &args)?;
        wait_for_line(&mut process, ready)?;
        Ok(Running::Process(process))
    };
    Ok(match system {
        System::Direct => Running::Nothing,
        System::XdpRouter => router("router", "router ready")?,
        System::TcRouter => router("tc-router", "tc router ready")?,
        System::TcRouterXdp => router("tc-router --xdp-pass", "tc router ready")?,
        System::Haproxy => {
            let conf = bed.work.join("haproxy.cfg");
            std::fs::write(&conf, haproxy_config(&bed.tls))?;
            let process = edge.spawn(
                "haproxy",
                "haproxy",
                &["-db", "-f", &conf.to_string_lossy()],
            )?;
            servers::wait_listening(edge, "t", HTTP_PORT)?;
            Running::Process(process)
        }
        System::Nginx => {
            let process = servers::nginx(
                edge,
                "nginx-proxy",
                &bed.work.join("nginx-proxy"),
                &nginx_config(&bed.tls),
            )?;
            servers::wait_listening(edge, "t", HTTP_PORT)?;
            Running::Process(process)
        }
        System::Ours(datapath) => Running::Agent(Agent::start(
            edge,
            &ours_config(&bed.tls, datapath, SynProxy::On),
            "native",
        )?),
        System::OursSynProxyOff(datapath) => Running::Agent(Agent::start(
            edge,
            &ours_config(&bed.tls, datapath, SynProxy::Off),
            "native",
        )?),
    })
}

/// TCP services: (name, edge port, origin port, TLS key).
fn tcp_services() -> [(&'static str, u16, u16, Option<KeyKind>); 5] {
    [
        ("iperf", IPERF_PORT, IPERF_PORT, None),
        ("http", HTTP_PORT, HTTP_PORT, None),
        ("echo", ECHO_PORT, ECHO_PORT, None),
        (
            "tls-ecdsa",
            TLS_ECDSA_PORT,
            HTTP_PORT,
            Some(KeyKind::EcdsaP256),
        ),
        ("tls-rsa", TLS_RSA_PORT, HTTP_PORT, Some(KeyKind::Rsa2048)),
    ]
}

fn haproxy_config(tls: &TlsFiles) -> String {
    let origin = addr::ORG_V4;
    let mut conf = format!(
        "global\n  maxconn 9000\n  nbthread 2\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
         timeout server 60s\n  backlog {LISTEN_BACKLOG}\n"
    );
    for (name, port, origin_port, key) in tcp_services() {
        let ssl = key.map_or(String::new(), |k| {
            format!(" ssl crt {}", tls.haproxy_pem(k).display())
        });
        conf += &format!(
            "listen {name}\n  bind {EDGE_IP}:{port}{ssl}\n  server o1 {origin}:{origin_port}\n"
        );
    }
    conf
}

fn nginx_config(tls: &TlsFiles) -> String {
    let origin = addr::ORG_V4;
    let mut servers = String::new();
    for (_, port, origin_port, key) in tcp_services() {
        let ssl = key.map_or(String::new(), |k| {
            let (cert, key) = tls.pair(k);
            format!(
                // nginx 1.22 stream leaves TLS 1.3 off unless asked.
                " ssl; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate {}; ssl_certificate_key {}",
                cert.display(),
                key.display()
            )
        });
        servers += &format!(
            "  server {{ listen {EDGE_IP}:{port} backlog={LISTEN_BACKLOG}{ssl}; \
             proxy_pass {origin}:{origin_port}; }}\n"
        );
    }
    format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         worker_processes 2;\nevents {{ worker_connections 8192; }}\n\
         stream {{\n{servers}\
           server {{ listen {EDGE_IP}:{IPERF_PORT} udp; proxy_pass {origin}:{IPERF_PORT}; proxy_timeout 5s; }}\n\
         }}\n"
    )
}

/// Whether our config turns the SYN proxy off.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SynProxy {
    /// The default: the config does not name it.
    On,
    /// `edge.syn_proxy: "off"`.
    Off,
}

/// The same services as the peers: the plain ones on the fast path (its
/// NAT in XDP or at TC ingress as `datapath` says), the TLS ones
/// (flexible) on the agent. One config for every datapath but that field
/// (and, with the SYN proxy off, `edge.syn_proxy`).
fn ours_config(tls: &TlsFiles, datapath: Datapath, syn_proxy: SynProxy) -> String {
    let origin = addr::ORG_V4;
    let mut apps: Vec<String> = tcp_services()
        .into_iter()
        .map(|(name, port, origin_port, key)| {
            let tls = key.map_or(String::new(), |k| {
                let (cert, key) = tls.pair(k);
                format!(
                    r#", "tls": "flexible", "tls_cert": "{}", "tls_key": "{}""#,
                    cert.display(),
                    key.display()
                )
            });
            format!(
                r#"{{"protocol": "tcp/{port}", "dns": {{"type": "ADDRESS", "name": "{name}.bench"}},
                   "edge_ips": {{"type": "static", "ips": ["{EDGE_IP}"]}},
                   "origin_direct": ["tcp://{origin}:{origin_port}"]{tls}}}"#
            )
        })
        .collect();
    apps.push(format!(
        r#"{{"protocol": "udp/{IPERF_PORT}", "dns": {{"type": "ADDRESS", "name": "udp.bench"}},
            "edge_ips": {{"type": "static", "ips": ["{EDGE_IP}"]}},
            "origin_direct": ["udp://{origin}:{IPERF_PORT}"]}}"#
    ));
    let (source, syn_proxy) = match syn_proxy {
        SynProxy::On => (datapath.origin_source(), ""),
        SynProxy::Off => (
            datapath.origin_source_syn_proxy_off(),
            r#", "syn_proxy": "off""#,
        ),
    };
    // Every load generator is one client address: the per-client limits
    // (1,000 new flows a second by default) would measure themselves, and
    // the peers have none.
    format!(
        r#"{{"edge": {{"interfaces": ["{}", "{}"], "datapath": "{}",
             "client_limits": {{"new_flows_per_second": 0, "concurrent_flows": 0}},
             "origin_source": {{"ipv4": "{source}"}}{syn_proxy}}}, "apps": [{}]}}"#,
        addr::EDGE_CLI_IF,
        addr::EDGE_ORG_IF,
        datapath.name(),
        apps.join(",\n")
    )
}

/// Our config (the fast-path apps the XDP cost measurement uses among
/// them), XDP datapath: the cost measured is the XDP program's.
pub fn cost_config(bed: &Bed) -> String {
    ours_config(&bed.tls, Datapath::Xdp, SynProxy::On)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> TlsFiles {
        TlsFiles {
            ecdsa: ("/w/ecdsa.crt".into(), "/w/ecdsa.key".into()),
            rsa: ("/w/rsa.crt".into(), "/w/rsa.key".into()),
        }
    }

    #[test]
    fn every_system_serves_the_same_ports() {
        let files = files();
        let haproxy = haproxy_config(&files);
        let nginx = nginx_config(&files);
        for (_, port, _, key) in tcp_services() {
            let listen = format!("{EDGE_IP}:{port}");
            assert!(haproxy.contains(&listen), "haproxy lacks {listen}");
            assert!(nginx.contains(&listen), "nginx lacks {listen}");
            for datapath in Datapath::ALL {
                let ours = ours_config(&files, datapath, SynProxy::On);
                assert!(
                    ours.contains(&format!("tcp/{port}\"")),
                    "ours ({datapath:?}) lacks {port}"
                );
            }
            if key.is_some() {
                assert!(haproxy.contains(&format!("{listen} ssl crt /w/")));
            }
        }
        assert!(haproxy.contains("crt /w/rsa.pem") && haproxy.contains("crt /w/ecdsa.pem"));
        assert!(nginx.contains("ssl_certificate /w/rsa.crt"));
        assert!(nginx.contains(&format!("{EDGE_IP}:{IPERF_PORT} udp")));
        for datapath in Datapath::ALL {
            let ours = ours_config(&files, datapath, SynProxy::On);
            assert_eq!(ours.matches(r#""tls": "flexible""#).count(), 2);
            assert!(ours.contains(&format!("udp/{IPERF_PORT}\"")));
            let parsed: serde_json::Value = serde_json::from_str(&ours).expect("ours is JSON");
            assert_eq!(parsed["apps"].as_array().map(Vec::len), Some(6));
            assert_eq!(parsed["edge"]["datapath"], datapath.name());
        }
    }

    /// The systems of ours differ by `edge.datapath` and `edge.syn_proxy`
    /// alone (and the address they NAT from, each its own); with the SYN
    /// proxy on, the config leaves it to its default.
    #[test]
    fn our_systems_differ_by_their_datapath_and_syn_proxy_only() {
        let files = files();
        let parsed = |datapath: Datapath, syn_proxy: SynProxy| -> serde_json::Value {
            let mut config: serde_json::Value =
                serde_json::from_str(&ours_config(&files, datapath, syn_proxy)).unwrap();
            let edge = config["edge"].as_object_mut().unwrap();
            edge.remove("datapath").expect("edge.datapath is set");
            let source = edge.remove("origin_source").expect("origin_source is set");
            let named = edge.remove("syn_proxy");
            match syn_proxy {
                SynProxy::On => {
                    assert_eq!(source["ipv4"], datapath.origin_source());
                    assert_eq!(named, None);
                }
                SynProxy::Off => {
                    assert_eq!(source["ipv4"], datapath.origin_source_syn_proxy_off());
                    assert_eq!(named, Some("off".into()));
                }
            }
            config
        };
        let sources: std::collections::BTreeSet<&str> = Datapath::ALL
            .into_iter()
            .flat_map(|d| [d.origin_source(), d.origin_source_syn_proxy_off()])
            .collect();
        assert_eq!(sources.len(), 6, "one address each");
        let xdp = parsed(Datapath::Xdp, SynProxy::On);
        for datapath in Datapath::ALL {
            for syn_proxy in [SynProxy::On, SynProxy::Off] {
                assert_eq!(
                    parsed(datapath, syn_proxy),
                    xdp,
                    "{datapath:?} {syn_proxy:?}"
                );
            }
        }
        let names: Vec<&str> = Datapath::ALL.map(Datapath::name).to_vec();
        assert_eq!(names, ["xdp", "tc", "auto"]);
    }

    /// The peers' listeners queue as many handshakes as the kernel lets
    /// them, so its SYN cookies engage only when a flood fills that.
    #[test]
    fn the_peers_listen_with_the_deployment_backlog() {
        let files = files();
        let haproxy = haproxy_config(&files);
        assert!(haproxy.contains("defaults\n  mode tcp\n"), "{haproxy}");
        assert!(
            haproxy.contains(&format!("  backlog {LISTEN_BACKLOG}\n")),
            "{haproxy}"
        );
        let nginx = nginx_config(&files);
        for (_, port, _, _) in tcp_services() {
            let listen = format!("listen {EDGE_IP}:{port} backlog={LISTEN_BACKLOG}");
            assert!(nginx.contains(&listen), "{nginx}");
        }
    }
}
