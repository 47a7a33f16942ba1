//! Access rules at run time: the config's rules (ASN and country ones
//! expanded from the GeoIP databases) become the kernel's prefix set, which
//! is put in force at once; flows (fast path) and connections and flows
//! (agent path) that the new set blocks are cut, whichever version of
//! their app they started on; and the kernel's sampled block events are
//! logged, rate-limited.
pub mod geoip;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use proxy_common::{BlockEvent, ListenerKey, ListenerValue, RULE_BLOCK, Verdict, ip_proto};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    config::model::{Config, RuleTarget},
    kernel::{
        conntrack_gc::{cut_flows, cut_flows_where, ip_of},
        loader::Kernel,
        maps::{addr16, map_contents},
        ring::spawn_drain,
        rules::{self, RuleSet},
    },
    proxy::{live::Live, tcp::TcpProxyState, udp::UdpProxyState},
};

/// The kernel prefix set of the config's rules. Fails when a GeoIP
/// database cannot be read or the set does not fit.
pub fn build(config: &Config) -> anyhow::Result<RuleSet> {
    let started = Instant::now();
    let geo = geoip::expand(config)?;
    let set = rules::compile(&config.access_rules, &geo)?;
    for (index, (rule, count)) in config.access_rules.iter().zip(&set.per_rule).enumerate() {
        if !matches!(rule.target, RuleTarget::Asn(_) | RuleTarget::Country(_)) {
            continue;
        }
        let name = rule_name(config, index as u32);
        if count.listed == 0 {
            warn!(rule = %name, target = ?rule.target, "matches no network of the GeoIP database");
        } else {
            info!(rule = %name, target = ?rule.target, networks = count.listed, prefixes = count.merged, "expanded from the GeoIP database");
        }
    }
    info!(
        rules = config.access_rules.len(),
        allow_prefixes = set.allow.len(),
        block_prefixes = set.block.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "access rules compiled"
    );
    Ok(set)
}

/// Puts `set` in force, then cuts the fast-path flows of clients it blocks
/// ([`cut_blocked_by_listener`]): a tracked flow's packets skip the rules.
pub fn apply(kernel: &mut Kernel, config: &Config, set: &RuleSet) -> anyhow::Result<()> {
    let loaded = kernel.load_rules(set)?;
    info!(
        generation = loaded.generation,
        prefixes = loaded.prefixes,
        elapsed_ms = loaded.elapsed.as_millis() as u64,
        "access rules in force"
    );
    // Nothing can be blocked: no need to walk the flow table.
    if !set.block.is_empty() {
        cut_blocked_by_listener(kernel, config);
    }
    Ok(())
}

/// Cuts every fast-path flow whose client the rules in force block and
/// whose app has `ip_firewall`, whichever version of the app it started
/// on (see [`Firewalled`]).
fn cut_blocked_by_listener(kernel: &mut Kernel, config: &Config) {
    let Some(firewalled) = Firewalled::of(config) else {
        return;
    };
    let cut = cut_flows_where(kernel, |kernel, key, value| {
        firewalled.covers(key.proto, key.dst, key.dst_port, value.app)
            && blocks(kernel, ip_of(key.src))
    });
    log_cut(cut);
}

/// After `set` is in force: cuts the agent paths' open connections (TCP)
/// and flows (UDP) of clients it blocks, on apps with `ip_firewall`,
/// whichever version of the app they started on. Logged once, per app slot.
pub fn cut_blocked_connections(
    kernel: &mut Kernel,
    config: &Config,
    set: &RuleSet,
    tcp: &TcpProxyState,
    udp: &UdpProxyState,
) {
    let paths: [(u8, &Live); 2] = [(ip_proto::TCP, tcp.live()), (ip_proto::UDP, udp.live())];
    if set.block.is_empty() || paths.iter().all(|(_, live)| live.is_empty()) {
        return;
    }
    let Some(firewalled) = Firewalled::of(config) else {
        return;
    };
    for (proto, live) in paths {
        let cut = live.cut_where(|client, edge, slot| {
            firewalled.covers(proto, addr16(edge.ip()), edge.port(), slot) && blocks(kernel, client)
        });
        if !cut.is_empty() {
            let path = if proto == ip_proto::TCP {
                "connections"
            } else {
                "UDP flows"
            };
            info!(
                ?cut,
                "agent-path {path} of clients the rules block were cut (app slot: count)"
            );
        }
    }
}

/// Which app slots the access rules cover: a flow or connection counts as
/// an `ip_firewall` app's when it is in the app's slot or when the app now
/// serves its (protocol, edge address, port). A changed app's old version
/// keeps its flows and connections in a slot of its own (retired) that no
/// app of the config holds: judged by its slot alone, one opened before an
/// edit would outlive every later block rule.
struct Firewalled {
    slots: BTreeSet<u32>,
    listeners: BTreeMap<ListenerKey, ListenerValue>,
}

impl Firewalled {
    /// None when no app has `ip_firewall` (or the listeners do not fit,
    /// which the config's validation already refused: logged).
    fn of(config: &Config) -> Option<Self> {
        let slots: BTreeSet<u32> = config
            .apps
            .iter()
            .filter(|app| app.ip_firewall)
            .map(|app| app.slot)
            .collect();
        if slots.is_empty() {
            return None;
        }
        // As many as the kernel's listener table holds, at most.
        match map_contents(config) {
            Ok(contents) => Some(Self {
                slots,
                listeners: contents.listeners,
            }),
            Err(err) => {
                warn!("cutting what the access rules block: {err}");
                None
            }
        }
    }

    fn covers(&self, proto: u8, edge: [u8; 16], port: u16, slot: u32) -> bool {
        self.slots.contains(&slot)
            || self
                .listeners
                .get(&ListenerKey::new(proto, edge, port))
                .is_some_and(|listener| self.slots.contains(&listener.app))
    }
}

/// Whether the rules in force block `client`.
fn blocks(kernel: &mut Kernel, client: IpAddr) -> bool {
    matches!(kernel.rule_for(client), Ok(Some((RULE_BLOCK, _))))
}

fn log_cut(cut: anyhow::Result<BTreeMap<u32, u64>>) {
    match cut {
        Ok(cut) if !cut.is_empty() => {
            info!(
                ?cut,
                "flows of clients the rules block were cut (app slot: flows)"
            )
        }
        Ok(_) => {}
        Err(err) => warn!("cutting flows of blocked clients: {err:#}"),
    }
}

/// Cuts the fast-path flows, counted in the app slots `slots`, of clients
/// the rules in force block. A failed walk is logged, not returned: the
/// rules are in force either way, and every new flow is checked.
pub fn cut_blocked_flows(kernel: &mut Kernel, slots: &BTreeSet<u32>) {
    if slots.is_empty() {
        return;
    }
    let cut = cut_flows(kernel, |kernel, client, app| {
        slots.contains(&app) && blocks(kernel, client)
    });
    log_cut(cut);
}

/// `access_rules[i]`, with the rule's id when it has one.
pub fn rule_name(config: &Config, index: u32) -> String {
    match config.access_rules.get(index as usize) {
        Some(rule) => rule.name(index as usize),
        None => format!("access_rules[{index}]"),
    }
}

/// Block events per second that reach the log; the rest are counted and
/// summed up once a second.
pub const LOGGED_EVENTS_PER_SECOND: u32 = 10;

/// Logs block events, at most `LOGGED_EVENTS_PER_SECOND`.
#[derive(Debug)]
pub struct EventLog {
    window: Instant,
    logged: u32,
    suppressed: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            window: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }
}

impl EventLog {
    /// Logs `event` unless this second's budget is spent. Returns whether
    /// it was logged.
    pub fn log(&mut self, config: &Config, event: &BlockEvent, now: Instant) -> bool {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                warn!(
                    suppressed = self.suppressed,
                    "more packets blocked by access rules (not logged one by one; see `proxy-agent stats`)"
                );
            }
            *self = Self {
                window: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if self.logged >= LOGGED_EVENTS_PER_SECOND {
            self.suppressed += 1;
            return false;
        }
        self.logged += 1;
        let app = config
            .app_in_slot(event.app)
            .map_or("?", |app| app.dns.name.as_str());
        let reason = Verdict::ALL
            .get(event.verdict as usize)
            .map_or("blocked", |v| v.name());
        let proto = match event.proto {
            proxy_common::ip_proto::TCP => "tcp",
            proxy_common::ip_proto::UDP => "udp",
            _ => "?",
        };
        let client = SocketAddr::new(ip_of(event.src), event.src_port);
        let edge = SocketAddr::new(ip_of(event.dst), event.dst_port);
        if event.verdict == Verdict::ClientLimited as u8 {
            // Sampled by the kernel like rule drops (`kernel::clients`).
            warn!(%client, %edge, proto, app, reason, "over a per-client limit: dropped");
            return true;
        }
        warn!(
            %client,
            %edge,
            proto,
            app,
            rule = %rule_name(config, event.rule),
            reason,
            status = 403,
            "blocked by an access rule"
        );
        true
    }
}

/// Reads the kernel's block events into a channel (events that find the
/// channel full are dropped: the log is sampled anyway).
pub fn spawn_event_reader(ring: RingBuf<MapData>) -> anyhow::Result<mpsc::Receiver<BlockEvent>> {
    let (tx, rx) = mpsc::channel(256);
    spawn_drain(ring, "block event", move |ring| {
        while let Some(item) = ring.next() {
            if let Some(event) = parse_event(&item) {
                let _ = tx.try_send(event);
            }
        }
    })?;
    Ok(rx)
}

fn parse_event(bytes: &[u8]) -> Option<BlockEvent> {
    if bytes.len() < size_of::<BlockEvent>() {
        return None;
    }
    // SAFETY: long enough; BlockEvent is plain data valid for any bits.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<BlockEvent>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::load_str(
            r#"{"edge": {"interfaces": ["eth0"]}, "apps": [], "access_rules": [
                {"id": "r1", "mode": "block", "configuration": {"target": "ip", "value": "192.0.2.1"}}
            ]}"#,
            false,
        )
        .unwrap()
        .config
    }

    #[test]
    fn the_log_keeps_to_its_budget_and_starts_again_each_second() {
        let config = config();
        let mut log = EventLog::default();
        let start = Instant::now();
        let event = BlockEvent::default();
        let logged = (0..25).filter(|_| log.log(&config, &event, start)).count();
        assert_eq!(logged, LOGGED_EVENTS_PER_SECOND as usize);
        assert_eq!(log.suppressed, 15);
        assert!(log.log(&config, &event, start + Duration::from_millis(1001)));
        assert_eq!(log.suppressed, 0);
    }

    #[test]
    fn rules_are_named_with_their_id() {
        let config = config();
        assert_eq!(rule_name(&config, 0), "access_rules[0] (id r1)");
        assert_eq!(rule_name(&config, 7), "access_rules[7]");
    }

    #[test]
    fn events_are_read_from_ring_bytes() {
        let event = BlockEvent {
            src_port: 4242,
            app: 3,
            verdict: Verdict::BlockedAsn as u8,
            ..BlockEvent::default()
        };
        // SAFETY: plain data, read as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&event as *const BlockEvent).cast::<u8>(),
                size_of::<BlockEvent>(),
            )
        };
        assert_eq!(parse_event(bytes), Some(event));
        assert_eq!(parse_event(&bytes[1..]), None);
    }
}
