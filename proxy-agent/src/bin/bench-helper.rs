//! Benchmark helper (driven by `cargo xtask bench`, not for production):
//!
//! - `router IFACE...`: attach the minimal XDP router (FIB lookup +
//!   redirect, no NAT) until SIGTERM: the ceiling of any XDP design here.
//! - `tc-router [--xdp-pass] IFACE...`: the same at TC ingress (FIB lookup +
//!   bpf_redirect_neigh, no NAT) until SIGTERM: the ceiling of any TC design
//!   (with `--xdp-pass`, of any TC design that keeps an XDP program first).
//! - `sink IFACE`: count and drop IPv4 UDP at the origin until SIGTERM, so
//!   a flood's delivered rate is not capped by the origin's own stack.
//! - `xdp-cost --ingress IFACE --config FILE ...`: the proxy program's cost
//!   per packet via BPF_PROG_TEST_RUN, for a fast-path hit (conntrack hit,
//!   NAT, checksums, FIB lookup; at XDP and at TC ingress), a packet to no
//!   listener and a non-IP frame; prints JSON.
//! - `verifier-insns`: how many instructions the verifier walked for each
//!   production program (XDP, TC ingress, their SYN proxies, sk_lookup);
//!   prints JSON.
//! - `rule-cost --database FILE`: the access rules' cost per packet
//!   (BPF_PROG_TEST_RUN, blocked and allowed clients) with no rules, 10 and
//!   1,000,000 prefixes and a whole country of the database loaded, and the
//!   time to expand and load each set; prints JSON.
use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use aya::{
    TestRun as _, TestRunOptions,
    programs::{SchedClassifier, SkLookup, TcAttachType, Xdp, XdpMode},
};
use clap::{Parser, Subcommand};
use ipnet::{IpNet, Ipv4Net};
use proxy_agent::{
    access::geoip::{GeoPrefixes, country_prefixes},
    config::{
        self,
        model::{AccessRule, Origin, RuleAction, RuleTarget},
    },
    kernel::{
        loader::Kernel,
        maps::{addr16, map_contents},
        rules::{RuleSet, compile},
    },
    proxy::origin::fill_origin_sources,
};
use proxy_common::{
    DIR_TO_CLIENT, FLOW_REPLIED, FlowKey, FlowValue, PASS_PROGRAM, ROUTER_PROGRAM, SINK_COUNT_MAP,
    SINK_PROGRAM, STEER_PROGRAM, SYN_PROXY_PROGRAM, SYN_PROXY_TC_PROGRAM, TC_PROGRAM,
    TC_ROUTER_PROGRAM, XDP_PROGRAM, ip_proto,
};

/// The benchmark's eBPF object (`proxy-ebpf`'s `bench` binary, built by
/// the agent's build script): the routers, the XDP pass program and the
/// sink. The cost probes load the agent's own object through [`Kernel`].
static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench"));

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Router {
        interfaces: Vec<String>,
    },
    /// Attach the minimal TC-ingress router to the interfaces until SIGTERM.
    TcRouter {
        /// Also attach an XDP program that passes everything (native
        /// mode): the TC router as a design that keeps XDP first sees it.
        #[arg(long)]
        xdp_pass: bool,
        interfaces: Vec<String>,
    },
    /// Count and drop IPv4 UDP on an interface until SIGTERM, then print
    /// the count.
    Sink {
        interface: String,
    },
    XdpCost {
        #[arg(long)]
        ingress: String,
        #[arg(long)]
        config: PathBuf,
        /// Client -> edge app address and port of a fast-path app.
        #[arg(long)]
        client: Ipv4Addr,
        #[arg(long)]
        edge: Ipv4Addr,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
    /// Load the production programs and print the verifier's instruction
    /// count of each (`verified_insns` of bpf_prog_info, kernel 5.16+).
    VerifierInsns,
    RuleCost {
        /// A MaxMind-format country database (ip-location-db or GeoLite2).
        #[arg(long)]
        database: PathBuf,
        /// The country whose every network is blocked.
        #[arg(long, default_value = "US")]
        country: String,
        /// Where the allowed client of that rule set comes from.
        #[arg(long, default_value = "DE")]
        allowed_country: String,
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Router { interfaces } => router(&interfaces),
        Command::TcRouter {
            interfaces,
            xdp_pass,
        } => tc_router(&interfaces, xdp_pass),
        Command::Sink { interface } => sink(&interface),
        Command::XdpCost {
            ingress,
            config,
            client,
            edge,
            port,
            repeat,
        } => xdp_cost(&ingress, &config, client, edge, port, repeat),
        Command::VerifierInsns => verifier_insns(),
        Command::RuleCost {
            database,
            country,
            allowed_country,
            repeat,
        } => rule_cost(&database, &country, &allowed_country, repeat),
    }
}

fn router(interfaces: &[String]) -> anyhow::Result<()> {
    let mut ebpf = aya::EbpfLoader::new().load(BENCH_OBJECT)?;
    {
        let mut ports: aya::maps::DevMapHash<_> = ebpf
            .map_mut(proxy_common::map_names::TX_PORTS)
            .ok_or_else(|| anyhow!("no TX_PORTS map"))?
            .try_into()?;
        for interface in interfaces {
            let index = proxy_agent::preflight::interface_index(interface, "router")?;
            ports.insert(index, index, None, 0)?;
        }
    }
    let program: &mut Xdp = ebpf
        .program_mut(ROUTER_PROGRAM)
        .ok_or_else(|| anyhow!("no router program"))?
        .try_into()?;
    program.load()?;
    for interface in interfaces {
        program
            .attach(interface, XdpMode::Driver)
            .with_context(|| format!("attaching the router to {interface}"))?;
    }
    println!("router ready");
    wait_for_signal()
}

fn tc_router(interfaces: &[String], xdp_pass: bool) -> anyhow::Result<()> {
    let mut ebpf = aya::EbpfLoader::new().load(BENCH_OBJECT)?;
    if xdp_pass {
        let pass: &mut Xdp = ebpf
            .program_mut(PASS_PROGRAM)
            .ok_or_else(|| anyhow!("no pass program"))?
            .try_into()?;
        pass.load()?;
        for interface in interfaces {
            pass.attach(interface, XdpMode::Driver)
                .with_context(|| format!("attaching the XDP pass program to {interface}"))?;
        }
    }
    let program: &mut SchedClassifier = ebpf
        .program_mut(TC_ROUTER_PROGRAM)
        .ok_or_else(|| anyhow!("no tc router program"))?
        .try_into()?;
    program.load()?;
    // TCX on 6.6+ (no clsact qdisc needed), netlink cls_bpf before.
    let mut links = Vec::new();
    for interface in interfaces {
        let link = program
            .attach(interface, TcAttachType::Ingress)
            .with_context(|| format!("attaching the tc router to {interface}"))?;
        links.push(link);
    }
    println!("tc router ready");
    let waited = wait_for_signal();
    for link in links {
        program.detach(link)?;
    }
    waited
}

fn sink(interface: &str) -> anyhow::Result<()> {
    let mut ebpf = aya::EbpfLoader::new().load(BENCH_OBJECT)?;
    let program: &mut Xdp = ebpf
        .program_mut(SINK_PROGRAM)
        .ok_or_else(|| anyhow!("no sink program"))?
        .try_into()?;
    program.load()?;
    program
        .attach(interface, XdpMode::Driver)
        .with_context(|| format!("attaching the sink to {interface}"))?;
    println!("sink ready");
    wait_for_signal()?;
    let counts: aya::maps::PerCpuArray<_, u64> = ebpf
        .map(SINK_COUNT_MAP)
        .ok_or_else(|| anyhow!("no sink counter"))?
        .try_into()?;
    let total: u64 = counts.get(&0, 0)?.iter().sum();
    println!("sink count {total}");
    Ok(())
}

/// Blocks until SIGTERM or SIGINT.
fn wait_for_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// An Ethernet + IPv4 + TCP frame (checksums are not read by the program).
fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

fn xdp_cost(
    ingress: &str,
    config_path: &Path,
    client: Ipv4Addr,
    edge: Ipv4Addr,
    port: u16,
    repeat: u32,
) -> anyhow::Result<()> {
    let mut config = config::load(config_path)
        .map_err(|e| anyhow!("{e}"))?
        .config;
    fill_origin_sources(&mut config, &Default::default())?;
    let mut kernel = Kernel::load()?;
    kernel.sync(&map_contents(&config)?)?;
    kernel.add_redirect_targets(&config.edge.interfaces)?;
    // A fast-path hit rewrites the frame, and BPF_PROG_TEST_RUN repeats on
    // the rewritten frame. Two flows that rewrite into each other, both
    // toward routable neighbours, keep every repetition a hit that ends in
    // a redirect: edge -> client (as a reply leaves) becomes edge-source ->
    // origin, which becomes edge -> client again.
    let frame = tcp_frame(edge, client, port, 31000, 0x10);
    let (source, origin) = (
        config
            .edge
            .origin_source
            .ipv4
            .first()
            .copied()
            .ok_or_else(|| anyhow!("no IPv4 origin source"))?,
        match &config
            .apps
            .iter()
            .find(|a| a.edge_ports.start == port)
            .map(|a| &a.origin)
        {
            Some(Origin::Direct(origins)) => origins[0].ip,
            _ => return Err(anyhow!("no direct origin for port {port}")),
        },
    );
    let to_origin = FlowKey {
        src: addr16(client.into()),
        dst: addr16(edge.into()),
        src_port: 31000,
        dst_port: port,
        proto: ip_proto::TCP,
        _pad: [0; 3],
    };
    let rewritten = FlowKey {
        src: addr16(source.into()),
        dst: addr16(origin),
        src_port: 31000,
        dst_port: port,
        ..to_origin
    };
    let into = |key: &FlowKey| FlowValue {
        new_src: key.src,
        new_dst: key.dst,
        new_src_port: key.src_port,
        new_dst_port: key.dst_port,
        state: FLOW_REPLIED,
        ..FlowValue::default()
    };
    let to_client = FlowKey {
        src: addr16(edge.into()),
        dst: addr16(client.into()),
        src_port: port,
        dst_port: 31000,
        ..to_origin
    };
    // Each with its other half pointing back, as an established flow
    // has: the fast path drops a half whose other half is gone.
    let peer_of = |key: &FlowKey, value: &FlowValue| {
        (
            value.peer_key(key.proto),
            FlowValue {
                new_src: key.dst,
                new_dst: key.src,
                new_src_port: key.dst_port,
                new_dst_port: key.src_port,
                state: FLOW_REPLIED,
                direction: DIR_TO_CLIENT,
                ..FlowValue::default()
            },
        )
    };
    {
        let mut flows = kernel.flows()?;
        for (key, value) in [(to_client, into(&rewritten)), (rewritten, into(&to_client))] {
            let (peer, back) = peer_of(&key, &value);
            flows.insert(key, value, 0)?;
            flows.insert(peer, back, 0)?;
        }
    }
    let ingress = Some(proxy_agent::preflight::interface_index(
        ingress,
        "--ingress",
    )?);
    let hit = cost_per_packet(&mut kernel, &frame, ingress, repeat)?;
    // Out through another interface (redirect) or the one it came in on (TX).
    anyhow::ensure!(
        hit.0 == XDP_REDIRECT || hit.0 == XDP_TX,
        "the fast-path frame ended with XDP action {} after {repeat} repetitions, not \
         XDP_REDIRECT or XDP_TX: the flows did not stay on the fast path (routes and \
         neighbours of the client and the origin must be known in this namespace)",
        hit.0
    );
    let tc_hit = tc_cost_per_packet(&mut kernel, &frame, ingress, repeat)?;
    anyhow::ensure!(
        tc_hit.0 == TC_ACT_REDIRECT,
        "the fast-path frame ended with TC action {} after {repeat} repetitions, not \
         TC_ACT_REDIRECT",
        tc_hit.0
    );
    let miss = tcp_frame(client, edge, 31000, 9, 0x10);
    let (_, miss_cost) = cost_per_packet(&mut kernel, &miss, ingress, repeat)?;
    let arp = [0xffu8; 42];
    let (_, not_ip_cost) = cost_per_packet(&mut kernel, &arp, ingress, repeat)?;
    println!(
        "{}",
        serde_json::json!({
            "fast_path_hit_action": hit.0,
            "fast_path_hit_ns": hit.1.as_nanos() as u64,
            "tc_fast_path_hit_ns": tc_hit.1.as_nanos() as u64,
            "no_listener_ns": miss_cost.as_nanos() as u64,
            "not_ip_ns": not_ip_cost.as_nanos() as u64,
            "repeat": repeat,
        })
    );
    Ok(())
}

/// Runs the proxy program `repeat` times on `frame` (BPF_PROG_TEST_RUN
/// keeps the frame as each run left it): the last run's action and the
/// kernel's mean time per run.
fn cost_per_packet(
    kernel: &mut Kernel,
    frame: &[u8],
    ingress_ifindex: Option<u32>,
    repeat: u32,
) -> anyhow::Result<(u32, Duration)> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
    let md: [u32; 6] = [0, frame.len() as u32, 0, ingress_ifindex.unwrap_or(0), 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 256];
    let result = kernel.program()?.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: ingress_ifindex.map(|_| ctx.as_slice()),
        repeat,
        ..Default::default()
    })?;
    Ok((result.return_value, result.duration))
}

/// struct __sk_buff (linux/bpf.h): its size and the offsets of the
/// interface fields BPF_PROG_TEST_RUN takes from ctx_in (every other byte
/// must be 0).
const SKB_SIZE: usize = 192;
const SKB_INGRESS_IFINDEX: usize = 36;
const SKB_IFINDEX: usize = 40;

/// [`cost_per_packet`] for the TC-ingress program, the skb received on
/// `ingress_ifindex`.
fn tc_cost_per_packet(
    kernel: &mut Kernel,
    frame: &[u8],
    ingress_ifindex: Option<u32>,
    repeat: u32,
) -> anyhow::Result<(u32, Duration)> {
    let mut skb = [0u8; SKB_SIZE];
    let index = ingress_ifindex.unwrap_or(0).to_ne_bytes();
    skb[SKB_INGRESS_IFINDEX..SKB_INGRESS_IFINDEX + 4].copy_from_slice(&index);
    skb[SKB_IFINDEX..SKB_IFINDEX + 4].copy_from_slice(&index);
    let mut out = vec![0u8; frame.len() + 256];
    let result = kernel.tc_program()?.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&skb),
        repeat,
        ..Default::default()
    })?;
    Ok((result.return_value, result.duration))
}

/// The verifier's instruction count of each production program, loaded
/// from the agent's object as the agent loads it.
fn verifier_insns() -> anyhow::Result<()> {
    let mut kernel = Kernel::load()?;
    let count = |info: aya::programs::ProgramInfo| info.verified_instruction_count();
    let xdp = count(kernel.program()?.info()?);
    let tc = count(kernel.tc_program()?.info()?);
    let steer: &mut SkLookup = kernel
        .ebpf_mut()
        .program_mut(STEER_PROGRAM)
        .ok_or_else(|| anyhow!("no {STEER_PROGRAM} program"))?
        .try_into()?;
    steer.load()?;
    let steer = count(steer.info()?);
    // Loaded with the main programs (their tail-call targets).
    let mut loaded = |name: &str| -> anyhow::Result<Option<u32>> {
        let program = kernel
            .ebpf_mut()
            .program(name)
            .ok_or_else(|| anyhow!("no {name} program"))?;
        Ok(count(program.info()?))
    };
    let syn_proxy = loaded(SYN_PROXY_PROGRAM)?;
    let syn_proxy_tc = loaded(SYN_PROXY_TC_PROGRAM)?;
    println!(
        "{}",
        serde_json::json!({
            XDP_PROGRAM: xdp,
            TC_PROGRAM: tc,
            SYN_PROXY_PROGRAM: syn_proxy,
            SYN_PROXY_TC_PROGRAM: syn_proxy_tc,
            STEER_PROGRAM: steer,
        })
    );
    Ok(())
}

const TC_ACT_REDIRECT: u32 = 7;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
const RULE_EDGE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const RULE_PORT: u16 = 443;

/// One firewalled app whose packets go to the agent (PROXY headers): a
/// client the rules let through ends `to_agent` (XDP_PASS) without opening
/// a flow, so every repetition of a SYN takes the same path, and no route
/// or interface is needed.
fn firewalled_app() -> anyhow::Result<config::model::Config> {
    let text = format!(
        r#"{{"edge": {{"interfaces": ["lo"]}},
            "apps": [{{"protocol": "tcp/{RULE_PORT}",
            "dns": {{"type": "ADDRESS", "name": "walled.bench"}},
            "edge_ips": {{"type": "static", "ips": ["{RULE_EDGE}"]}},
            "origin_direct": ["tcp://192.0.2.1:{RULE_PORT}"],
            "proxy_protocol": "v1", "ip_firewall": true}}]}}"#
    );
    Ok(config::load_str(&text, false)
        .map_err(|e| anyhow!("{e}"))?
        .config)
}

/// A rule set to measure: its rules, the networks they expand to, and a
/// client it blocks and one it lets through.
struct RuleCase {
    name: String,
    rules: Vec<AccessRule>,
    geo: GeoPrefixes,
    /// Time spent reading the GeoIP database (none for synthetic sets).
    read_database: Duration,
    blocked: Option<Ipv4Addr>,
    allowed: Ipv4Addr,
}

fn block(target: RuleTarget) -> AccessRule {
    AccessRule {
        id: String::new(),
        created_on: None,
        modified_on: None,
        action: RuleAction::Block,
        target,
        notes: None,
    }
}

/// No rule: the program reads `RULE_STATE` and skips the trie.
fn no_rules() -> RuleCase {
    RuleCase {
        name: "no rules".into(),
        rules: Vec::new(),
        geo: GeoPrefixes::default(),
        read_database: Duration::ZERO,
        blocked: None,
        allowed: Ipv4Addr::new(16, 0, 1, 1),
    }
}

/// One ASN rule over `count` /24s, every other /24 from 16.0.0.0 (so none
/// merge); the blocked client sits in the middle /24, the allowed one in
/// the gap right after it (a lookup that walks as deep as a hit).
fn synthetic(count: u32) -> RuleCase {
    let base = u32::from(Ipv4Addr::new(16, 0, 0, 0));
    let nth = |n: u32| Ipv4Addr::from(base + n * 512);
    let nets: Vec<IpNet> = (0..count)
        .map(|n| IpNet::V4(Ipv4Net::new(nth(n), 24).expect("a /24")))
        .collect();
    let middle = u32::from(nth(count / 2));
    let mut geo = GeoPrefixes::default();
    geo.asns.insert(64500, nets);
    RuleCase {
        name: format!("{count} synthetic /24s"),
        rules: vec![block(RuleTarget::Asn(64500))],
        geo,
        read_database: Duration::ZERO,
        blocked: Some(Ipv4Addr::from(middle + 1)),
        allowed: Ipv4Addr::from(middle + 256 + 1),
    }
}

/// Every network of `country` in the database; the clients are the first
/// addresses of the middle IPv4 network of `country` and of
/// `allowed_country`.
fn whole_country(
    database: &Path,
    country: &str,
    allowed_country: &str,
) -> anyhow::Result<RuleCase> {
    let middle_v4 = |nets: &[IpNet], code: &str| -> anyhow::Result<Ipv4Addr> {
        let v4: Vec<Ipv4Addr> = nets
            .iter()
            .filter_map(|n| match n {
                IpNet::V4(n) => Some(n.network()),
                IpNet::V6(_) => None,
            })
            .collect();
        v4.get(v4.len() / 2)
            .copied()
            .ok_or_else(|| anyhow!("no IPv4 network of {code} in {}", database.display()))
    };
    let started = Instant::now();
    let countries = country_prefixes(database, &BTreeSet::from([country.to_owned()]))?;
    let read_database = started.elapsed();
    let others = country_prefixes(database, &BTreeSet::from([allowed_country.to_owned()]))?;
    let geo = GeoPrefixes {
        countries,
        ..Default::default()
    };
    Ok(RuleCase {
        name: format!("country {country}, whole database"),
        rules: vec![block(RuleTarget::Country(country.to_owned()))],
        blocked: Some(middle_v4(&geo.countries[country], country)?),
        allowed: middle_v4(&others[allowed_country], allowed_country)?,
        geo,
        read_database,
    })
}

fn rule_cost(
    database: &Path,
    country: &str,
    allowed_country: &str,
    repeat: u32,
) -> anyhow::Result<()> {
    let config = firewalled_app()?;
    let contents = map_contents(&config)?;
    let cases = [
        no_rules(),
        synthetic(10),
        synthetic(1_000_000),
        whole_country(database, country, allowed_country)?,
    ];
    let mut rows = Vec::new();
    for case in cases {
        let started = Instant::now();
        let set: RuleSet = compile(&case.rules, &case.geo)?;
        let expand = case.read_database + started.elapsed();
        let networks: usize = case
            .geo
            .countries
            .values()
            .chain(case.geo.asns.values())
            .map(Vec::len)
            .sum();
        // A fresh program per set: the load time is the new set's alone,
        // not the removal of the one before.
        let mut kernel = Kernel::load()?;
        kernel.sync(&contents)?;
        let loaded = kernel.load_rules(&set)?;
        let mut measure = |client: Ipv4Addr, want: u32| -> anyhow::Result<u64> {
            let frame = tcp_frame(client, RULE_EDGE, 31000, RULE_PORT, 0x02);
            let (action, cost) = cost_per_packet(&mut kernel, &frame, None, repeat)?;
            anyhow::ensure!(
                action == want,
                "{}: client {client} got XDP action {action}, not {want}",
                case.name
            );
            Ok(cost.as_nanos() as u64)
        };
        let blocked_ns = case.blocked.map(|c| measure(c, XDP_DROP)).transpose()?;
        let allowed_ns = measure(case.allowed, XDP_PASS)?;
        rows.push(serde_json::json!({
            "rule_set": case.name,
            "networks": networks,
            "prefixes": set.len(),
            "expand_us": expand.as_micros() as u64,
            "load_us": loaded.elapsed.as_micros() as u64,
            "blocked_client": case.blocked.map(|c| c.to_string()),
            "blocked_ns": blocked_ns,
            "allowed_client": case.allowed.to_string(),
            "allowed_ns": allowed_ns,
        }));
    }
    println!(
        "{}",
        serde_json::json!({
            "repeat": repeat,
            "database": database,
            "country": country,
            "allowed_country": allowed_country,
            "rule_sets": rows,
        })
    );
    Ok(())
}
