//! Benchmark helper (driven by `cargo xtask bench`, not for production):
//!
//! - `router IFACE...`: attach the minimal XDP router (FIB lookup +
//!   redirect, no NAT) until SIGTERM: the ceiling of any XDP design here.
//! - `sink IFACE`: count and drop IPv4 UDP at the origin until SIGTERM, so
//!   a flood's delivered rate is not capped by the origin's own stack.
//! - `xdp-cost --ingress IFACE --config FILE ...`: the proxy program's cost
//!   per packet via BPF_PROG_TEST_RUN, for a fast-path hit (conntrack hit,
//!   NAT, checksums, FIB lookup), a packet to no listener and a non-IP
//!   frame; prints JSON.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use aya::{
    TestRun as _, TestRunOptions,
    programs::{Xdp, XdpMode},
};
use clap::{Parser, Subcommand};
use proxy_agent::{
    EBPF_OBJECT,
    config::{self, model::Origin},
    datapath::{
        loader::Datapath,
        maps::{addr16, map_contents},
    },
    origin::fill_origin_sources,
};
use proxy_common::{
    FLOW_REPLIED, FlowKey, FlowValue, ROUTER_PROGRAM, SINK_COUNT_MAP, SINK_PROGRAM, ip_proto,
};

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Router { interfaces } => router(&interfaces),
        Command::Sink { interface } => sink(&interface),
        Command::XdpCost {
            ingress,
            config,
            client,
            edge,
            port,
            repeat,
        } => xdp_cost(&ingress, &config, client, edge, port, repeat),
    }
}

fn router(interfaces: &[String]) -> anyhow::Result<()> {
    let mut ebpf = aya::EbpfLoader::new().load(EBPF_OBJECT)?;
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

fn sink(interface: &str) -> anyhow::Result<()> {
    let mut ebpf = aya::EbpfLoader::new().load(EBPF_OBJECT)?;
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
    let mut datapath = Datapath::load()?;
    datapath.sync(&map_contents(&config)?)?;
    datapath.add_redirect_targets(&config.edge.interfaces)?;
    // A fast-path hit rewrites the frame, and BPF_PROG_TEST_RUN repeats on
    // the rewritten frame: two flow entries that rewrite into each other
    // make every repetition a hit (client -> origin, then back).
    let frame = tcp_frame(client, edge, 31000, port, 0x10);
    let (source, origin) = (
        config
            .edge
            .origin_source
            .ipv4
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
    {
        let mut flows = datapath.flows()?;
        flows.insert(to_origin, into(&rewritten), 0)?;
        flows.insert(rewritten, into(&to_origin), 0)?;
    }
    let ifindex = proxy_agent::preflight::interface_index(ingress, "--ingress")?;
    let mut run = |frame: &[u8], repeat: u32| -> anyhow::Result<(u32, Duration)> {
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let mut out = vec![0u8; frame.len() + 256];
        let result = datapath.program()?.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..Default::default()
        })?;
        Ok((result.return_value, result.duration))
    };
    let (hit, hit_cost) = run(&frame, repeat)?;
    let (_, miss_cost) = run(&tcp_frame(client, edge, 31000, 9, 0x10), repeat)?;
    let arp = [0xffu8; 42];
    let (_, not_ip_cost) = run(&arp, repeat)?;
    println!(
        "{}",
        serde_json::json!({
            "fast_path_hit_action": hit,
            "fast_path_hit_ns": hit_cost.as_nanos() as u64,
            "no_listener_ns": miss_cost.as_nanos() as u64,
            "not_ip_ns": not_ip_cost.as_nanos() as u64,
            "repeat": repeat,
        })
    );
    Ok(())
}
