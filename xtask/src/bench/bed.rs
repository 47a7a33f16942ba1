//! The bench's bed: the namespace topology, its origins (iperf3, nginx,
//! echo), the addresses our systems NAT from, the flood counter at the
//! origin, and the veths' link mode; set up once per run, shared by every
//! system.
use std::path::{Path, PathBuf};

use ::tests::{
    netns::{Topology, addr},
    process::Background,
    scratch_dir, servers,
};

use super::{Datapath, ECHO_PORT, IPERF_PORT, LinkMode, flood, peers};

/// The topology, its origins, and the files the systems share.
pub struct Bed {
    pub topology: Topology,
    pub work: PathBuf,
    pub release: PathBuf,
    pub tls: peers::TlsFiles,
    /// The link mode in force; None after a change that failed half-way.
    mode: std::cell::Cell<Option<LinkMode>>,
    _origins: Vec<Background>,
}

impl Bed {
    pub(super) fn new(release: &Path) -> anyhow::Result<Bed> {
        let topology = Topology::new("bench")?;
        // Before anything listens: the backlog is fixed at listen().
        for ns in [&topology.edge, &topology.org] {
            peers::deployment_sysctls(ns)?;
        }
        let work = scratch_dir().join("bench");
        std::fs::create_dir_all(&work)?;
        let tls = peers::TlsFiles::new(&work)?;
        let org = &topology.org;
        let iperf = org.spawn(
            "iperf3-server",
            "iperf3",
            &["-s", "-p", &IPERF_PORT.to_string()],
        )?;
        servers::wait_listening(org, "t", IPERF_PORT)?;
        let origins = vec![
            iperf,
            peers::nginx_origin(org, &work)?,
            servers::tcp_echo(org, ECHO_PORT)?,
        ];
        let bed = Bed {
            topology,
            work,
            release: release.to_path_buf(),
            tls,
            mode: std::cell::Cell::new(None),
            _origins: origins,
        };
        bed.set_mode(LinkMode::Wire)?;
        for datapath in [Datapath::Xdp, Datapath::Tc, Datapath::Auto] {
            for source in [
                datapath.origin_source(),
                datapath.origin_source_syn_proxy_off(),
            ] {
                let address = format!("{source}/24");
                bed.topology
                    .edge
                    .run("ip", &["addr", "add", &address, "dev", addr::EDGE_ORG_IF])?;
            }
        }
        flood::count_flood_at_origin(&bed.topology.org)?;
        // Resolve neighbours once, so no system pays for it in its first run.
        let t = &bed.topology;
        t.cli.run("ping", &["-c1", "-W2", addr::ORG_V4])?;
        t.edge.run("ping", &["-c1", "-W2", addr::ORG_V4])?;
        t.edge.run("ping", &["-c1", "-W2", addr::CLI_V4])?;
        Ok(bed)
    }

    /// Sets the veths for `mode`; nothing to do when it is in force.
    pub(super) fn set_mode(&self, mode: LinkMode) -> anyhow::Result<()> {
        if self.mode.get() == Some(mode) {
            return Ok(());
        }
        self.mode.set(None);
        let t = &self.topology;
        let (tx, gro) = match mode {
            LinkMode::Wire => ("off", "on"),
            LinkMode::VethDefault => ("on", "off"),
        };
        for ns in [&t.cli, &t.org] {
            ns.run("ethtool", &["-K", addr::CLI_IF, "tx", tx, "gro", gro])?;
        }
        for dev in [addr::EDGE_CLI_IF, addr::EDGE_ORG_IF] {
            t.edge.run("ethtool", &["-K", dev, "gro", gro])?;
        }
        self.mode.set(Some(mode));
        Ok(())
    }
}
