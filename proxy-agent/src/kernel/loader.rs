//! Loads the agent's eBPF object (`proxy`: the XDP and TC-ingress programs
//! and sk_lookup), attaches them, writes the maps and publishes the
//! counters. Dropping the [`Kernel`] detaches the programs.
use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use std::os::fd::AsFd as _;

/// A flow table through a descriptor of its own (see `Kernel::flow_tables`).
pub type FlowTable = HashMap<MapData, FlowKey, FlowValue>;
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, DevMapHash, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf, SockMap,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{SchedClassifier, SkLookup, TcAttachType, Xdp, XdpMode},
};
use proxy_common::{
    AGENT_TCP_SOCKET, AGENT_UDP_SOCKET, AppValue, ClientKey, ClientLimitValue, ClientValue,
    Counter, FlowKey, FlowValue, ListenerKey, ListenerValue, MAX_APPS, MAX_ORIGINS_PER_FAMILY,
    OriginValue, PoolValue, RULE_ALLOW, RULE_BLOCK, RuleKey, RuleState, RuleValue, STEER_PROGRAM,
    SYN_PROXY_PROGRAM, SYN_PROXY_TC_PROGRAM, Settings, SourceSet, TC_PROGRAM, XDP_PROGRAM,
    map_names, origin_index, source_index,
};
use tracing::{info, warn};

use super::{
    maps::{AppOrigins, MapContents},
    rules::{RuleSet, lookup_key, rule_key},
};
use crate::EBPF_OBJECT;

/// Where an agent instance publishes its counters inside bpffs.
pub fn stats_pin_path(bpffs: &Path, instance: &str) -> PathBuf {
    bpffs
        .join("proxy-agent")
        .join(instance)
        .join(map_names::STATS)
}

pub struct Kernel {
    ebpf: Ebpf,
    pinned: Option<PathBuf>,
    /// The rule generation in force and the trie keys it holds.
    rules: Option<LoadedRules>,
    /// Whether the XDP program and the TC-ingress NAT are attached.
    xdp_attached: bool,
    tc_attached: bool,
    /// `CLIENT_LIMITS` as last written (the recount's prefix lengths).
    client_limits: std::sync::Arc<std::sync::Mutex<Vec<ClientLimitValue>>>,
    /// `accept_local` as it was on the XDP interfaces, put back when the
    /// kernel side goes (after `ebpf`, which detaches the programs).
    sysctls: Vec<super::sysctl::Restore>,
    /// rx-VLAN offload turned off at attach, back on when dropped (after
    /// `ebpf`, so after XDP is detached); `edge.allow_rx_vlan_offload`.
    rx_vlan: Option<super::offload::RxVlan>,
    allow_rx_vlan_offload: bool,
}

struct LoadedRules {
    generation: u8,
    keys: Vec<(u32, RuleKey)>,
}

/// What switching to a new rule set took.
#[derive(Debug, Clone, Copy)]
pub struct RulesLoaded {
    pub generation: u8,
    pub prefixes: usize,
    pub elapsed: Duration,
}

impl Kernel {
    /// Creates the embedded object's maps in the kernel; each program is
    /// verified and loaded when first asked for.
    pub fn load() -> anyhow::Result<Self> {
        let ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .context("loading the eBPF object into the kernel")?;
        Ok(Self {
            ebpf,
            pinned: None,
            rules: None,
            xdp_attached: false,
            sysctls: Vec::new(),
            tc_attached: false,
            rx_vlan: None,
            allow_rx_vlan_offload: false,
            client_limits: Default::default(),
        })
    }

    /// The underlying object, for the log reader and tests.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The XDP program, verified and loaded (not attached): what
    /// BPF_PROG_TEST_RUN needs.
    pub fn program(&mut self) -> anyhow::Result<&mut Xdp> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or_else(|| anyhow!("program {XDP_PROGRAM} missing from the object"))?
            .try_into()?;
        if program.fd().is_err() {
            verify(|| program.load()).context("verifying the XDP program")?;
            self.load_syn_proxy(false)?;
        }
        self.ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or_else(|| anyhow!("program {XDP_PROGRAM} missing from the object"))?
            .try_into()
            .map_err(Into::into)
    }

    /// Loads the SYN proxy program of a hook and puts it in the program
    /// array its packet path tail-calls (`SYN_PROXY_XDP`/`_TC`, slot 0).
    fn load_syn_proxy(&mut self, tc: bool) -> anyhow::Result<()> {
        let (name, array) = if tc {
            (SYN_PROXY_TC_PROGRAM, map_names::SYN_PROXY_TC)
        } else {
            (SYN_PROXY_PROGRAM, map_names::SYN_PROXY_XDP)
        };
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
        let fd = if tc {
            let program: &mut SchedClassifier = program.try_into()?;
            verify(|| program.load()).context("verifying the TC SYN proxy")?;
            program.fd()?.try_clone()?
        } else {
            let program: &mut Xdp = program.try_into()?;
            verify(|| program.load()).context("verifying the XDP SYN proxy")?;
            program.fd()?.try_clone()?
        };
        let mut slots: ProgramArray<_> = self.map(array)?;
        slots
            .set(0, &fd, 0)
            .with_context(|| format!("putting {name} in {array}"))?;
        Ok(())
    }

    /// `edge.allow_rx_vlan_offload`, for [`Self::attach`].
    pub fn allow_rx_vlan_offload(&mut self, allow: bool) {
        self.allow_rx_vlan_offload = allow;
    }

    /// Attaches the program to each interface, once (a second call does
    /// nothing). The interfaces must be in the redirect map already
    /// ([`Self::add_redirect_targets`]): steering needs them even without
    /// XDP.
    pub fn attach(&mut self, interfaces: &[String], mode: XdpMode) -> anyhow::Result<()> {
        if self.xdp_attached {
            return Ok(());
        }
        for interface in interfaces {
            self.sysctls
                .extend(super::sysctl::allow_local_source(interface));
        }
        if self.rx_vlan.is_none() {
            let allow = self.allow_rx_vlan_offload;
            self.rx_vlan = Some(super::offload::turn_off(interfaces, allow)?);
        }
        let program = self.program()?;
        for interface in interfaces {
            program.attach(interface, mode).with_context(|| {
                let hint = if mode == XdpMode::Driver {
                    " (if its driver has no native XDP, use --xdp-mode skb)"
                } else {
                    ""
                };
                format!("attaching XDP ({mode:?} mode) to {interface}{hint}")
            })?;
            info!(interface, ?mode, "XDP attached");
        }
        self.xdp_attached = true;
        Ok(())
    }

    /// The TC-ingress NAT program, verified and loaded (not attached):
    /// what BPF_PROG_TEST_RUN needs.
    pub fn tc_program(&mut self) -> anyhow::Result<&mut SchedClassifier> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(TC_PROGRAM)
            .ok_or_else(|| anyhow!("program {TC_PROGRAM} missing from the object"))?
            .try_into()?;
        if program.fd().is_err() {
            verify(|| program.load()).context("verifying the TC program")?;
            self.load_syn_proxy(true)?;
        }
        self.ebpf
            .program_mut(TC_PROGRAM)
            .ok_or_else(|| anyhow!("program {TC_PROGRAM} missing from the object"))?
            .try_into()
            .map_err(Into::into)
    }

    /// Attaches the TC-ingress NAT to each interface, once (apps with
    /// `datapath` tc or auto need it; it stays until the agent stops).
    pub fn attach_tc(&mut self, interfaces: &[String]) -> anyhow::Result<()> {
        if self.tc_attached {
            return Ok(());
        }
        let program = self.tc_program()?;
        for interface in interfaces {
            program
                .attach(interface, TcAttachType::Ingress)
                .with_context(|| format!("attaching the TC-ingress NAT to {interface}"))?;
            info!(interface, "TC ingress attached");
        }
        self.tc_attached = true;
        Ok(())
    }

    /// Lets the program redirect packets to these interfaces.
    pub fn add_redirect_targets(&mut self, interfaces: &[String]) -> anyhow::Result<()> {
        let mut ports: DevMapHash<_> = self.map(map_names::TX_PORTS)?;
        for interface in interfaces {
            let index = crate::preflight::interface_index(interface, "edge.interfaces")?;
            ports
                .insert(index, index, None, 0)
                .with_context(|| format!("adding {interface} to the redirect map"))?;
        }
        Ok(())
    }

    /// Makes the maps hold `contents`, in an order that never shows the
    /// program a listener whose app is not in place yet: apps and origins
    /// first, then new listeners, then stale listeners removed, then stale
    /// app slots cleared. Settings flags that go away do so first and new
    /// ones come last, so XDP never leaves a protocol to TC
    /// (`SettingsFlags::TC_ONLY_*`) while an app row of it still needs XDP (an
    /// access rule to apply, a fast path there).
    pub fn sync(&mut self, contents: &MapContents) -> anyhow::Result<()> {
        {
            let mut settings: Array<_, Settings> = self.map(map_names::SETTINGS)?;
            let flags_before = settings.get(&0, 0)?.flags;
            let during = Settings {
                flags: flags_before.and(contents.settings.flags),
                ..contents.settings
            };
            settings.set(0, during, 0)?;
        }
        self.sync_sources_and_passes(contents)?;
        {
            let mut origins: Array<_, OriginValue> = self.map(map_names::ORIGINS)?;
            for (index, origin) in &contents.origins {
                origins.set(*index, origin, 0)?;
            }
        }
        self.sync_client_limits(&contents.client_limits)?;
        {
            let mut apps: Array<_, AppValue> = self.map(map_names::APPS)?;
            for (index, app) in contents.apps.iter().enumerate() {
                apps.set(index as u32, app, 0)?;
            }
        }
        {
            let mut listeners: HashMap<_, ListenerKey, ListenerValue> =
                self.map(map_names::LISTENERS)?;
            for (key, value) in &contents.listeners {
                listeners.insert(key, value, 0)?;
            }
            let stale: Vec<ListenerKey> = listeners
                .keys()
                .filter_map(Result::ok)
                .filter(|key| !contents.listeners.contains_key(key))
                .collect();
            for key in &stale {
                listeners.remove(key)?;
            }
        }
        {
            let mut apps: Array<_, AppValue> = self.map(map_names::APPS)?;
            for index in contents.apps.len() as u32..MAX_APPS {
                if apps.get(&index, 0)? != AppValue::default() {
                    apps.set(index, AppValue::default(), 0)?;
                }
            }
        }
        let mut settings: Array<_, Settings> = self.map(map_names::SETTINGS)?;
        settings.set(0, contents.settings, 0)?;
        self.sync_pools(contents)
    }

    /// `ORIGIN_SOURCES`, and the new `UNLISTED_PASS` entries: before any
    /// listener or pool changes, so a socket of the agent's that is now
    /// exempt is never dropped.
    fn sync_sources_and_passes(&mut self, contents: &MapContents) -> anyhow::Result<()> {
        let mut sources: Array<_, SourceSet> = self.map(map_names::ORIGIN_SOURCES)?;
        for (ipv6, set) in [false, true].into_iter().zip(&contents.sources) {
            sources.set(source_index(ipv6), set, 0)?;
        }
        let mut pass: HashMap<_, ListenerKey, PoolValue> = self.map(map_names::UNLISTED_PASS)?;
        for key in &contents.unlisted_pass {
            pass.insert(key, PoolValue::default(), 0)?;
        }
        Ok(())
    }

    /// `POOLS` after the listeners (a new app's are in place before its
    /// address's traffic could be dropped), then stale `UNLISTED_PASS`
    /// entries once the pools no longer need them.
    fn sync_pools(&mut self, contents: &MapContents) -> anyhow::Result<()> {
        let mut pools: LpmTrie<_, [u8; 16], PoolValue> = self.map(map_names::POOLS)?;
        for (len, addr) in &contents.pools {
            pools.insert(&Key::new(*len, *addr), PoolValue::default(), 0)?;
        }
        let stale: Vec<Key<[u8; 16]>> = pools
            .keys()
            .filter_map(Result::ok)
            .filter(|key| !contents.pools.contains(&(key.prefix_len(), key.data())))
            .collect();
        for key in &stale {
            pools.remove(key)?;
        }
        let mut pass: HashMap<_, ListenerKey, PoolValue> = self.map(map_names::UNLISTED_PASS)?;
        let stale: Vec<ListenerKey> = pass
            .keys()
            .filter_map(Result::ok)
            .filter(|key| !contents.unlisted_pass.contains(key))
            .collect();
        for key in &stale {
            pass.remove(key)?;
        }
        Ok(())
    }

    /// `CLIENT_LIMITS` as `limits` says (by slot), slots past it cleared;
    /// only changed slots are written.
    fn sync_client_limits(&mut self, limits: &[ClientLimitValue]) -> anyhow::Result<()> {
        let mut map: Array<_, ClientLimitValue> = self.map(map_names::CLIENT_LIMITS)?;
        for index in 0..MAX_APPS {
            let want = limits.get(index as usize).copied().unwrap_or_default();
            if map.get(&index, 0)? != want {
                map.set(index, want, 0)?;
            }
        }
        *self
            .client_limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = limits.to_vec();
        Ok(())
    }

    /// Each app's per-client limits as last synced, by slot, shared with
    /// the flow collector's thread (which recounts by their prefixes).
    pub fn client_limits(&self) -> std::sync::Arc<std::sync::Mutex<Vec<ClientLimitValue>>> {
        std::sync::Arc::clone(&self.client_limits)
    }

    /// The per-client state of the fast path (see `kernel::clients`).
    pub fn clients(&mut self) -> anyhow::Result<HashMap<&mut MapData, ClientKey, ClientValue>> {
        self.map(map_names::CLIENTS)
    }

    /// Replaces one app's origins (after its origin_dns name resolved
    /// again): new slots first, then the counts that make them visible,
    /// then slots past the new counts cleared.
    pub fn set_app_origins(&mut self, index: u32, origins: &AppOrigins) -> anyhow::Result<()> {
        {
            let mut slots: Array<_, OriginValue> = self.map(map_names::ORIGINS)?;
            for (slot, origin) in &origins.slots {
                slots.set(*slot, origin, 0)?;
            }
        }
        {
            let mut apps: Array<_, AppValue> = self.map(map_names::APPS)?;
            apps.set(index, origins.app, 0)?;
        }
        let mut slots: Array<_, OriginValue> = self.map(map_names::ORIGINS)?;
        for ipv6 in [false, true] {
            for slot in origins.app.origin_count(ipv6) as u32..MAX_ORIGINS_PER_FAMILY {
                slots.set(origin_index(index, ipv6, slot), OriginValue::default(), 0)?;
            }
        }
        Ok(())
    }

    /// Puts `set` in force: its prefixes are written under the generation
    /// not in force, then `RULE_STATE` switches to it (one update: the
    /// program sees the old set or the new one, never a mix), then the old
    /// generation's prefixes are removed. On failure the old set stays in
    /// force and the half-written one is removed.
    pub fn load_rules(&mut self, set: &RuleSet) -> anyhow::Result<RulesLoaded> {
        let started = Instant::now();
        let generation = self.rules.as_ref().map_or(0, |r| r.generation ^ 1);
        let keys: Vec<(u32, RuleKey)> = set
            .entries()
            .map(|(action, net, _)| rule_key(generation, action, net))
            .collect();
        let mut trie: LpmTrie<_, RuleKey, RuleValue> = self.map(map_names::RULES)?;
        for ((len, key), (_, net, value)) in keys.iter().zip(set.entries()) {
            if let Err(err) = trie.insert(&Key::new(*len, *key), value, 0) {
                for (len, key) in &keys {
                    let _ = trie.remove(&Key::new(*len, *key));
                }
                return Err(err).with_context(|| {
                    format!("loading access-rule prefix {net}; the rules in force stay")
                });
            }
        }
        let state = RuleState {
            generation,
            has_allow: u8::from(!set.allow.is_empty()),
            has_block: u8::from(!set.block.is_empty()),
            _pad: 0,
        };
        let mut states: Array<_, RuleState> = self.map(map_names::RULE_STATE)?;
        states
            .set(0, state, 0)
            .context("switching to the new rule set")?;
        let old = self.rules.replace(LoadedRules { generation, keys });
        if let Some(old) = old {
            let mut trie: LpmTrie<_, RuleKey, RuleValue> = self.map(map_names::RULES)?;
            for (len, key) in &old.keys {
                let _ = trie.remove(&Key::new(*len, *key));
            }
        }
        Ok(RulesLoaded {
            generation,
            prefixes: set.len(),
            elapsed: started.elapsed(),
        })
    }

    /// The rule that decides for a client address under the rule set in
    /// force, as the kernel sees it: `(RULE_ALLOW or RULE_BLOCK, rule)`.
    pub fn rule_for(&mut self, ip: IpAddr) -> anyhow::Result<Option<(u8, RuleValue)>> {
        let Some(generation) = self.rules.as_ref().map(|r| r.generation) else {
            return Ok(None);
        };
        let trie: LpmTrie<_, RuleKey, RuleValue> = self.map(map_names::RULES)?;
        for action in [RULE_ALLOW, RULE_BLOCK] {
            let (len, key) = lookup_key(generation, action, ip);
            match trie.get(&Key::new(len, key), 0) {
                Ok(value) => return Ok(Some((action, value))),
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(err) => return Err(err).context("looking up an access rule"),
            }
        }
        Ok(None)
    }

    /// Prefixes in the rule trie, all generations (for tests and checks:
    /// walks the whole trie).
    pub fn rule_prefix_count(&mut self) -> anyhow::Result<usize> {
        let trie: LpmTrie<_, RuleKey, RuleValue> = self.map(map_names::RULES)?;
        Ok(trie.keys().filter(Result::is_ok).count())
    }

    /// The ring buffer of sampled block events (can be taken once).
    pub fn take_block_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(map_names::BLOCK_EVENTS)
            .ok_or_else(|| anyhow!("map {} missing or already taken", map_names::BLOCK_EVENTS))?;
        RingBuf::try_from(map).context("block events ring buffer")
    }

    /// Steers agent-path apps to the agent's sockets: the sk_lookup program
    /// is attached to this network namespace and given the TCP listener
    /// and the UDP socket, those there are.
    pub fn steer_to(
        &mut self,
        tcp: Option<&impl std::os::fd::AsRawFd>,
        udp: Option<&impl std::os::fd::AsRawFd>,
    ) -> anyhow::Result<()> {
        {
            let mut sockets: SockMap<_> = self.map(map_names::SOCKETS)?;
            if let Some(tcp) = tcp {
                sockets
                    .set(AGENT_TCP_SOCKET, tcp, 0)
                    .context("adding the TCP listener to the socket map")?;
            }
            if let Some(udp) = udp {
                sockets
                    .set(AGENT_UDP_SOCKET, udp, 0)
                    .context("adding the UDP socket to the socket map")?;
            }
        }
        let program: &mut SkLookup = self
            .ebpf
            .program_mut(STEER_PROGRAM)
            .ok_or_else(|| anyhow!("program {STEER_PROGRAM} missing from the object"))?
            .try_into()?;
        verify(|| program.load()).context("verifying the sk_lookup program")?;
        // The calling thread's namespace, which is where its sockets are
        // (`/proc/self` would name the main thread's, which may differ when
        // the agent runs inside another program).
        let netns =
            fs::File::open("/proc/thread-self/ns/net").context("opening this network namespace")?;
        program
            .attach(netns)
            .context("attaching sk_lookup to this network namespace")?;
        info!("sk_lookup attached: agent-path apps steered to the agent's sockets");
        Ok(())
    }

    /// Pins the counters at `path` so `proxy-agent stats` can read them.
    pub fn pin_stats(&mut self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            warn!(path = %path.display(), "replacing counters left pinned by an earlier run");
            fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
        let map = self
            .ebpf
            .map(map_names::STATS)
            .ok_or_else(|| anyhow!("map {} missing from the object", map_names::STATS))?;
        map.pin(path)
            .with_context(|| format!("pinning counters at {}", path.display()))?;
        self.pinned = Some(path.to_owned());
        Ok(())
    }

    /// The live counters.
    pub fn stats(&mut self) -> anyhow::Result<PerCpuArray<&mut MapData, Counter>> {
        self.map(map_names::STATS)
    }

    /// The established flow table (both directions of every flow).
    pub fn flows(&mut self) -> anyhow::Result<HashMap<&mut MapData, FlowKey, FlowValue>> {
        self.map(map_names::FLOWS)
    }

    /// The embryonic flow table (an LRU; same layout as `flows`).
    pub fn new_flows(&mut self) -> anyhow::Result<HashMap<&mut MapData, FlowKey, FlowValue>> {
        self.map(map_names::NEW_FLOWS)
    }

    /// Handles of their own on `FLOWS` and `NEW_FLOWS` (in that order), for
    /// the flow collector's thread: the same maps, through new descriptors.
    pub fn flow_tables(&self) -> anyhow::Result<[FlowTable; 2]> {
        Ok([
            self.own_map(map_names::FLOWS)?,
            self.own_map(map_names::NEW_FLOWS)?,
        ])
    }

    /// A handle of its own on `CLIENTS`, for the flow collector's thread.
    pub fn client_table(&self) -> anyhow::Result<HashMap<MapData, ClientKey, ClientValue>> {
        self.own_map(map_names::CLIENTS)
    }

    /// A hash map of the object through a new descriptor (the same map),
    /// for a thread of its own.
    fn own_map<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &str,
    ) -> anyhow::Result<HashMap<MapData, K, V>> {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the object"))?;
        let (aya::maps::Map::HashMap(data) | aya::maps::Map::LruHashMap(data)) = map else {
            return Err(anyhow!("map {name} is not a hash map"));
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .with_context(|| format!("duplicating the descriptor of map {name}"))?;
        let map = aya::maps::Map::from_map_data(MapData::from_fd(fd)?)?;
        Ok(HashMap::try_from(map)?)
    }

    fn map<'a, T>(&'a mut self, name: &str) -> anyhow::Result<T>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing from the object"))?;
        T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some(path) = self.pinned.take() {
            if let Err(err) = fs::remove_file(&path) {
                warn!(path = %path.display(), %err, "could not remove pinned counters");
            }
            // The instance directory, then proxy-agent/, go when empty.
            for dir in path.ancestors().skip(1).take(2) {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

/// Loads a program, again when the kernel answers EAGAIN: the verifier
/// gives up with it when a signal is pending for the loading thread (a
/// child of another thread exiting, say), and a program that takes it
/// seconds to verify (the SYN proxy's) meets one now and then. libbpf
/// retries the same way.
fn verify(
    mut load: impl FnMut() -> Result<(), aya::programs::ProgramError>,
) -> Result<(), aya::programs::ProgramError> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        match load() {
            Err(aya::programs::ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < ATTEMPTS =>
            {
                attempt += 1;
            }
            result => return result,
        }
    }
}
