//! Across apps: ids, edge addresses handed out, listeners that overlap.
use super::*;

impl Validator {
    pub(super) fn duplicate_ids(&mut self, drafts: &[AppDraft]) {
        let mut first: HashMap<AppId, usize> = HashMap::new();
        for (i, draft) in drafts.iter().enumerate() {
            let Some(id) = draft.id else { continue };
            match first.get(&id) {
                None => {
                    first.insert(id, i);
                }
                Some(&j) => {
                    let reason = if draft.id_generated {
                        format!(
                            "the id generated from protocol and dns.name is the same as \
                             apps[{j}]'s; give one of them an explicit id"
                        )
                    } else {
                        format!("same id as apps[{j}]")
                    };
                    self.error(None, format!("apps[{i}].id"), id.to_string(), reason);
                }
            }
        }
    }

    /// Each app's edge addresses: its static ips, or addresses from the pool.
    /// A dynamic app keeps the address its lease names while that is still
    /// in the pool and not held statically (or by another lease); the others
    /// take, in config order, the first pool host nobody holds. Leases are
    /// honoured before any new address is handed out, so an app added in
    /// front of others does not shift them.
    pub(super) fn edge_addresses(
        &mut self,
        drafts: &[AppDraft],
        pools: &Pools,
        leases: &Leases,
        reserved: &[IpAddr],
    ) -> Vec<Option<Vec<IpAddr>>> {
        // Static addresses, by the first app that names them.
        let mut statics: HashMap<IpAddr, usize> = HashMap::new();
        for (i, draft) in drafts.iter().enumerate() {
            if let Some(EdgeIps::Static(ips)) = &draft.edge_ips {
                for ip in ips {
                    statics.entry(*ip).or_insert(i);
                }
            }
        }
        let mut used: HashSet<IpAddr> = statics.keys().copied().collect();
        used.extend(reserved.iter().copied());
        // Pass 1: leases still valid. Pass 2: new addresses for the rest.
        let mut leased: Vec<[Option<IpAddr>; 2]> = vec![[None, None]; drafts.len()];
        for (i, draft) in drafts.iter().enumerate() {
            let (Some(EdgeIps::Dynamic { v4, v6, .. }), Some(id)) = (&draft.edge_ips, draft.id)
            else {
                continue;
            };
            let Some(held) = leases.0.get(&id) else {
                continue;
            };
            for (slot, family, wanted) in [(0, Family::V4, *v4), (1, Family::V6, *v6)] {
                let Some(&ip) = held.iter().find(|ip| Family::of(**ip) == family) else {
                    continue;
                };
                if !wanted {
                    continue;
                }
                let in_pool = matches!(pools.get(family), Pool::Net(net) if net.contains(&ip));
                if let (true, Some(&j)) = (in_pool, statics.get(&ip)) {
                    // Taken: a static address may not be one an app holds.
                    let holder = draft.dns.as_ref().map_or("?", |d| d.name.as_str());
                    self.error(
                        None,
                        format!("apps[{j}].edge_ips.ips"),
                        ip.to_string(),
                        format!(
                            "taken: apps[{i}] ({holder}, id {id}) holds it from the pool \
                             (edge address lease); remove that app, or its entry in \
                             edge.address_pool.state_file, to give the address up"
                        ),
                    );
                } else if in_pool && used.insert(ip) {
                    leased[i][slot] = Some(ip);
                } else {
                    let why = if in_pool {
                        "is now the DNS server's (dns_server.listen)"
                    } else {
                        "is outside the address pool now"
                    };
                    self.warn(
                        format!("apps[{i}].edge_ips"),
                        ip.to_string(),
                        format!("the app's leased address {why}; it gets a new one"),
                    );
                }
            }
        }
        let mut all = Vec::with_capacity(drafts.len());
        for (i, draft) in drafts.iter().enumerate() {
            let addrs = match &draft.edge_ips {
                None => None,
                Some(EdgeIps::Static(ips)) => Some(ips.clone()),
                Some(EdgeIps::Dynamic {
                    connectivity,
                    v4,
                    v6,
                }) => {
                    let mut addrs = Vec::new();
                    let mut ok = true;
                    for (slot, family, wanted) in [(0, Family::V4, *v4), (1, Family::V6, *v6)] {
                        if !wanted {
                            continue;
                        }
                        if let Some(ip) = leased[i][slot] {
                            addrs.push(ip);
                            continue;
                        }
                        let field = format!("apps[{i}].edge_ips");
                        match pools.get(family) {
                            Pool::Invalid => ok = false,
                            Pool::Absent => {
                                self.error(
                                    None,
                                    field,
                                    connectivity,
                                    format!(
                                        "dynamic edge_ips with connectivity {connectivity} need \
                                         an {} address, but {} is not configured",
                                        family.name(),
                                        pool_field(family)
                                    ),
                                );
                                ok = false;
                            }
                            Pool::Net(net) => match first_free(net, &used) {
                                Some(ip) => {
                                    used.insert(ip);
                                    addrs.push(ip);
                                }
                                None => {
                                    self.error(
                                        None,
                                        field,
                                        connectivity,
                                        format!(
                                            "{} {net} has no free address left",
                                            pool_field(family)
                                        ),
                                    );
                                    ok = false;
                                }
                            },
                        }
                    }
                    ok.then_some(addrs)
                }
            };
            all.push(addrs);
        }
        all
    }

    pub(super) fn overlapping_listeners(
        &mut self,
        files: &[AppFile],
        drafts: &[AppDraft],
        edge_addrs: &[Option<Vec<IpAddr>>],
    ) {
        struct Listener<'a> {
            index: usize,
            id: Option<AppId>,
            protocol: Protocol,
            ports: PortRange,
            addrs: &'a [IpAddr],
        }
        let listeners: Vec<Listener> = drafts
            .iter()
            .zip(edge_addrs)
            .enumerate()
            .filter_map(|(index, (draft, addrs))| {
                let (protocol, ports) = draft.protocol?;
                Some(Listener {
                    index,
                    id: draft.id,
                    protocol,
                    ports,
                    addrs: addrs.as_deref()?,
                })
            })
            .collect();
        let name = |l: &Listener| match l.id {
            Some(id) => format!("apps[{}] (id {id})", l.index),
            None => format!("apps[{}]", l.index),
        };
        for (k, later) in listeners.iter().enumerate() {
            for earlier in &listeners[..k] {
                if earlier.protocol != later.protocol {
                    continue;
                }
                let Some(ports) = earlier.ports.intersection(&later.ports) else {
                    continue;
                };
                let shared: Vec<String> = later
                    .addrs
                    .iter()
                    .filter(|ip| earlier.addrs.contains(ip))
                    .map(|ip| ip.to_string())
                    .collect();
                if shared.is_empty() {
                    continue;
                }
                let noun = if ports.len() == 1 { "port" } else { "ports" };
                self.error(
                    None,
                    format!("apps[{}].protocol", later.index),
                    &files[later.index].protocol,
                    format!(
                        "{} and {} both listen on {} {} {noun} {ports}",
                        name(later),
                        name(earlier),
                        later.protocol,
                        shared.join(", "),
                    ),
                );
            }
        }
    }
}
