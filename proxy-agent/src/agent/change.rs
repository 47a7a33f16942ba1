//! A config change, from a reload request or the API: validated as a
//! whole, everything that can fail built first ([`Agent::prepare`]), the
//! file written (API changes), then the steps of [`plan::plan`] run one by
//! one ([`Agent::apply`]); the config in force changes only when all ran.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::Instant,
};

use tracing::{debug, error, info, warn};

use super::{
    Agent, CHANGE_RESOLVE_WAIT, Reload, log_origins,
    plan::{self, ChangeError, ChangeRequest, Op, Slots},
    slots_with_flows,
};
use crate::{
    access,
    config::{self, edit::Document, model::Config},
    dns,
    kernel::{conntrack_gc, maps, rules::RuleSet, stats},
    preflight,
    proxy::routes::Table,
    proxy::tcp,
    proxy::udp,
};

/// Everything a change built before anything is switched.
struct Prepared {
    next: Config,
    slots: Slots,
    /// The steps, in order, computed from the running config and `next`.
    ops: Vec<Op>,
    resolved: BTreeMap<u32, Vec<IpAddr>>,
    rules: Option<RuleSet>,
    /// Taken by [`Op::SwitchRoutes`].
    tcp: Option<Table<tcp::Route>>,
    udp: Option<Table<udp::Route>>,
    contents: maps::MapContents,
    /// The DNS server's zones for the new apps, when it runs.
    zones: Option<dns::ZoneSet>,
}

impl Agent {
    /// The file on disk, validated and put in force (apps, access rules,
    /// dns_server answers); a file that fails keeps what runs.
    pub(super) async fn reload(&mut self, reload: Reload) {
        let path = self.paths.config.clone();
        info!(config = %path.display(), "{}: reloading the config", reload.cause);
        let loaded = match config::load(&path) {
            Ok(loaded) => loaded,
            Err(err) => {
                return warn!(config = %path.display(), "reload refused, the config in force stays:\n{err}");
            }
        };
        for warning in &loaded.warnings {
            warn!("{}: {warning}", path.display());
        }
        if let Err(err) = self.change_to(loaded.config, None).await {
            warn!("reload refused, the config in force stays: {err}");
        }
    }

    /// An API change: the file on disk edited, validated, written back and
    /// put in force; the outcome goes to the request's reply.
    pub(super) async fn edit(&mut self, request: ChangeRequest) {
        let ChangeRequest { edit, reply } = request;
        let outcome = self.edited(edit).await;
        if let Err(err) = &outcome {
            debug!("API change refused: {err}");
        }
        let _ = reply.send(outcome.map(|id| (Arc::new(self.config.clone()), id)));
    }

    async fn edited(&mut self, edit: plan::Edit) -> Result<String, ChangeError> {
        let path = self.paths.config.clone();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ChangeError::Apply(format!("reading {}: {e}", path.display())))?;
        let on_disk = config::load_as(&path, &text).map_err(|err| {
            ChangeError::Apply(format!(
                "the config file {} does not validate as it is; fix it first:\n{err}",
                path.display()
            ))
        })?;
        let toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let mut doc = Document::parse(&text, toml).map_err(ChangeError::Apply)?;
        doc.pin_ids(&on_disk.config);
        let id = edit(&mut doc).map_err(ChangeError::Edit)?;
        let new_text = doc
            .render()
            .map_err(|e| ChangeError::Apply(format!("rendering the config: {e:#}")))?;
        let loaded = config::load_as(&path, &new_text)?;
        self.change_to(loaded.config, Some(&doc)).await?;
        Ok(id)
    }

    /// Puts `next` in force (see the module's doc); with `write`, the
    /// document is written to the config file once everything is built.
    async fn change_to(
        &mut self,
        next: Config,
        write: Option<&Document>,
    ) -> Result<(), ChangeError> {
        let started = Instant::now();
        let prepared = self.prepare(next).await?;
        if let Some(doc) = write {
            doc.write_atomic(&self.paths.config).map_err(|e| {
                ChangeError::Apply(format!(
                    "writing {}: {e:#}; nothing was changed",
                    self.paths.config.display()
                ))
            })?;
        }
        let slots = prepared.slots.clone();
        self.switch(prepared).map_err(|err| {
            error!("applying a validated change failed part way: {err:#}");
            ChangeError::Apply(format!("{err:#}"))
        })?;
        info!(
            kept = slots.kept.len(),
            new = slots.fresh.len(),
            removed = slots.removed.len(),
            replaced = slots.retired.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "config change in force"
        );
        Ok(())
    }

    /// Builds everything `next` needs without changing anything.
    async fn prepare(&mut self, mut next: Config) -> Result<Prepared, ChangeError> {
        for part in plan::restart_only_changes(&self.config, &next) {
            warn!("{part} changed in the file: restart to apply it; the running {part} stays");
        }
        plan::keep_restart_only(&self.config, &mut next);
        let kernel = &mut self.kernel;
        let slots = plan::assign_slots(&self.config, &mut next, || slots_with_flows(kernel))
            .map_err(ChangeError::Refused)?;
        let apply = |e: anyhow::Error| ChangeError::Apply(format!("{e:#}"));
        // What the new config asks for cannot be had (a certificate that
        // does not load, a GeoIP database missing, the maps full): the
        // asker's to fix.
        let refused = |e: anyhow::Error| ChangeError::Refused(format!("{e:#}"));
        // Origin names of new apps resolved first, so their maps are whole.
        let fresh: BTreeSet<u32> = slots.fresh.iter().copied().collect();
        let mut resolved: BTreeMap<u32, Vec<IpAddr>> = self
            .resolved
            .iter()
            .filter(|(slot, _)| slots.kept.contains(slot))
            .map(|(slot, ips)| (*slot, ips.clone()))
            .collect();
        resolved.extend(
            self.resolvers
                .start(&next, &fresh, CHANGE_RESOLVE_WAIT)
                .await
                .map_err(apply)?,
        );
        let rules = if plan::rules_change(&self.config, &next) {
            Some(access::build(&next).map_err(refused)?)
        } else {
            None
        };
        let tcp = self.proxies.tcp.prepare(&next).map_err(refused)?;
        let udp = self.proxies.udp.prepare(&next).map_err(refused)?;
        let contents = maps::map_contents_resolved(&next, &resolved)
            .map_err(|e| ChangeError::Refused(e.to_string()))?;
        let zones = match &next.dns_server {
            Some(_) => Some(dns::zone_records(&next).map_err(refused)?),
            None => None,
        };
        let ops = plan::plan(&self.config, &next, &slots, &resolved);
        Ok(Prepared {
            next,
            slots,
            ops,
            resolved,
            rules,
            tcp: Some(tcp),
            udp: Some(udp),
            contents,
            zones,
        })
    }

    /// Switches to a prepared change: its steps in order, stopping at the
    /// first that fails; then the config in force is the new one.
    fn switch(&mut self, mut prepared: Prepared) -> anyhow::Result<()> {
        let ops = std::mem::take(&mut prepared.ops);
        for op in &ops {
            self.apply(op, &mut prepared)?;
        }
        self.config = prepared.next;
        self.resolved = prepared.resolved;
        self.published.send_replace(Arc::new(self.config.clone()));
        Ok(())
    }

    /// One step of a change, with what `prepared` built for it.
    fn apply(&mut self, op: &Op, prepared: &mut Prepared) -> anyhow::Result<()> {
        let next = &prepared.next;
        match op {
            Op::ClearCounters(slot) => stats::clear_slot(&mut self.kernel, *slot)?,
            Op::SetRules => {
                if let Some(rules) = &prepared.rules {
                    access::apply(&mut self.kernel, next, rules)?;
                }
            }
            Op::CutBlockedFlows(slots) => access::cut_blocked_flows(&mut self.kernel, slots),
            Op::SwitchRoutes => {
                if let Some(tcp) = prepared.tcp.take() {
                    self.proxies.tcp.install(tcp);
                }
                if let Some(udp) = prepared.udp.take() {
                    self.proxies.udp.install(udp);
                }
            }
            Op::SetOrigins(slot) => {
                if let Some(ips) = prepared.resolved.get(slot) {
                    self.proxies.tcp.set_origins(*slot, ips);
                    self.proxies.udp.set_origins(*slot, ips);
                    log_origins(next, *slot, ips);
                }
            }
            Op::AttachXdp => self.kernel.attach(&next.edge.interfaces, self.xdp_mode)?,
            Op::AttachTc => self.kernel.attach_tc(&next.edge.interfaces)?,
            Op::SyncMaps => self.kernel.sync(&prepared.contents)?,
            Op::CutFlows(removed) => {
                let cut = conntrack_gc::cut_flows(&mut self.kernel, |_, _, slot| {
                    removed.contains(&slot)
                })?;
                if !cut.is_empty() {
                    info!(?cut, "flows of deleted apps cut (app slot: flows)");
                }
            }
            Op::UpdateDns => {
                if let (Some(dns), Some(settings), Some(zones)) =
                    (&self.dns, &next.dns_server, &prepared.zones)
                    && let Err(err) = dns.install(settings, zones)
                {
                    warn!("dns_server answers not updated: {err:#}");
                }
            }
            Op::StopResolver(slot) => self.resolvers.stop(*slot),
            Op::WriteLeases => {
                if let Some(path) = &next.edge.lease_file
                    && (next.apps.iter().any(|a| a.edge_ips_dynamic) || path.exists())
                    && let Err(err) = config::leases::write(path, next)
                {
                    warn!(path = %path.display(), "writing edge address leases: {err}");
                }
            }
            Op::WriteRunningApps => preflight::write_running_apps(&self.paths.instance, next),
        }
        Ok(())
    }
}
