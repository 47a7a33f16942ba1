//! A config change, from a reload request or the API: validated as a
//! whole, everything that can fail built first ([`Agent::prepare`]), then
//! the steps of [`plan::plan`] run one by one ([`Agent::apply`]). The file
//! is written (API changes) only once every step that switches something
//! ran: a step that fails (a map full, an attach refused) is undone with
//! those before it, in reverse ([`Agent::undo`]), so the agent serves the
//! config in force and the file still holds it, byte for byte. Whatever
//! sequence of API calls, the file is a config the agent ran.
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
    /// The routes [`Op::SwitchRoutes`] replaced, put back by a rollback.
    tcp_before: Option<Arc<Table<tcp::Route>>>,
    udp_before: Option<Arc<Table<udp::Route>>>,
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

    /// An API change: the file on disk edited, validated, put in force, and
    /// only then written back; the outcome goes to the request's reply.
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
        let outside = config::api_edge_ips(&on_disk.config, &loaded.config);
        if !outside.is_empty() {
            return Err(ChangeError::Invalid(outside));
        }
        self.change_to(loaded.config, Some(&doc)).await?;
        Ok(id)
    }

    /// Puts `next` in force (see the module's doc); with `write`, the
    /// document is written to the config file once every step that can be
    /// undone ran, and a failed write undoes them too.
    async fn change_to(
        &mut self,
        next: Config,
        write: Option<&Document>,
    ) -> Result<(), ChangeError> {
        let started = Instant::now();
        let prepared = self.prepare(next).await?;
        let slots = prepared.slots.clone();
        self.switch(prepared, write)?;
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
        let taken = config::host_edge_ips(&next, &super::start::host_addresses());
        if !taken.is_empty() {
            return Err(ChangeError::Invalid(taken));
        }
        for part in plan::restart_only_changes(&self.config, &next) {
            warn!("{part} changed in the file: restart to apply it; the running {part} stays");
        }
        plan::keep_restart_only(&self.config, &mut next);
        let kernel = &mut self.kernel;
        let slots = plan::assign_slots(&self.config, &mut next, || slots_with_flows(kernel))
            .map_err(ChangeError::Refused)?;
        let apply = |e: anyhow::Error| ChangeError::Apply(format!("{e:#}"));
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
        let built = self.build(next, slots, resolved);
        if built.is_err() {
            // The new versions' resolvers serve nothing now.
            fresh.iter().for_each(|slot| self.resolvers.stop(*slot));
        }
        built
    }

    /// What `prepare` builds once the new apps' origins are known.
    fn build(
        &self,
        next: Config,
        slots: Slots,
        resolved: BTreeMap<u32, Vec<IpAddr>>,
    ) -> Result<Prepared, ChangeError> {
        // What the new config asks for cannot be had (a certificate that
        // does not load, a GeoIP database missing, the maps full): the
        // asker's to fix.
        let refused = |e: anyhow::Error| ChangeError::Refused(format!("{e:#}"));
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
            tcp_before: None,
            udp_before: None,
            contents,
            zones,
        })
    }

    /// Switches to a prepared change: its steps in order. One that fails
    /// before [`Op::WriteFile`] is undone with those before it, and the
    /// change refused; after the file, a step's failure is logged (those
    /// steps cut flows and stop resolvers: nothing to undo, nothing that
    /// could make the config in force another one). Then the config in
    /// force is the new one.
    fn switch(
        &mut self,
        mut prepared: Prepared,
        write: Option<&Document>,
    ) -> Result<(), ChangeError> {
        let ops = std::mem::take(&mut prepared.ops);
        let commit = ops
            .iter()
            .position(|op| *op == Op::WriteFile)
            .unwrap_or(ops.len());
        for (done, op) in ops[..commit].iter().enumerate() {
            if let Err(err) = self.apply(op, &mut prepared) {
                // The failed step may have half-run: undone with the rest.
                let undone = self.undo(&ops[..=done], &mut prepared);
                return Err(failed(&format!("{op:?}"), &err, undone));
            }
        }
        if let Some(doc) = write {
            let path = &self.paths.config;
            if let Err(err) = doc.write_atomic(path) {
                let err = err.context(format!("writing {}", path.display()));
                let undone = self.undo(&ops[..commit], &mut prepared);
                return Err(failed("WriteFile", &err, undone));
            }
        }
        for op in ops.iter().skip(commit + 1) {
            if let Err(err) = self.apply(op, &mut prepared) {
                error!("a config change in force: step {op:?} failed: {err:#}");
            }
        }
        // New versions' resolvers started in `prepare`; none to stop here.
        self.config = prepared.next;
        self.resolved = prepared.resolved;
        self.published.send_replace(Arc::new(self.config.clone()));
        Ok(())
    }

    /// Undoes `done` (the steps that ran, the last perhaps half), in
    /// reverse, back to the config in force; `Err` names what could not be
    /// put back. The new versions' resolvers are stopped.
    fn undo(&mut self, done: &[Op], prepared: &mut Prepared) -> Result<(), String> {
        let mut left = Vec::new();
        for op in done.iter().rev() {
            let undone = match op {
                Op::SyncMaps => maps::map_contents_resolved(&self.config, &self.resolved)
                    .map_err(anyhow::Error::from)
                    .and_then(|contents| self.kernel.sync(&contents)),
                Op::SwitchRoutes => {
                    if let Some(tcp) = prepared.tcp_before.take() {
                        self.proxies.tcp.reinstate(tcp);
                    }
                    if let Some(udp) = prepared.udp_before.take() {
                        self.proxies.udp.reinstate(udp);
                    }
                    Ok(())
                }
                Op::SetRules if prepared.rules.is_some() => access::build(&self.config)
                    .and_then(|rules| access::apply(&mut self.kernel, &self.config, &rules)),
                // A hook attached stays until the agent stops, as after a
                // change that removes the last app needing it: with the
                // running maps it serves the running apps. A fresh slot's
                // counters and origins belong to no app in force.
                _ => Ok(()),
            };
            if let Err(err) = undone {
                error!("rolling back a failed change: undoing {op:?} failed: {err:#}");
                left.push(format!("{op:?}: {err:#}"));
            }
        }
        for slot in &prepared.slots.fresh {
            self.resolvers.stop(*slot);
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(left.join("; "))
        }
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
            Op::CutBlockedConnections => {
                if let Some(rules) = &prepared.rules {
                    let (tcp, udp) = (&self.proxies.tcp, &self.proxies.udp);
                    access::cut_blocked_connections(&mut self.kernel, next, rules, tcp, udp);
                }
            }
            Op::SwitchRoutes => {
                if let Some(tcp) = prepared.tcp.take() {
                    prepared.tcp_before = Some(self.proxies.tcp.install(tcp));
                }
                if let Some(udp) = prepared.udp.take() {
                    prepared.udp_before = Some(self.proxies.udp.install(udp));
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
            // The file is written by `switch`, between the steps.
            Op::WriteFile => {}
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

/// The refusal of a change whose step `step` failed with `err`; `undone`
/// says whether the rollback put the running state back.
fn failed(step: &str, err: &anyhow::Error, undone: Result<(), String>) -> ChangeError {
    match undone {
        Ok(()) => {
            warn!("a config change failed at step {step}, rolled back: {err:#}");
            ChangeError::Apply(format!(
                "applying the change failed at step {step}: {err:#}; it was rolled back: \
                 the config in force and the config file are unchanged"
            ))
        }
        Err(left) => {
            error!(
                "a config change failed at step {step} and its rollback failed part way: {left}"
            );
            ChangeError::Apply(format!(
                "applying the change failed at step {step}: {err:#}; the config file is \
                 unchanged, but rolling back failed part way ({left}): restart the agent to \
                 serve the config file as it is"
            ))
        }
    }
}
