//! The fast path's per-client flow counts (`CLIENTS`), made true again.
//! The kernel adds one per flow it opens and never subtracts (it does not
//! see a flow end: the collector removes it), so after each complete walk
//! of the flow tables the collector's thread recounts the live flows per
//! (app, client prefix) and writes the counts back. Work is bounded by the
//! tables' and `CLIENTS`' sizes, and off the main loop.

use proxy_common::{
    ClientKey, ClientLimitValue, ClientValue, DIR_TO_ORIGIN, FlowKey, FlowValue, MAX_APPS,
};

use aya::maps::{HashMap, MapData};

/// Live flows per (app, client prefix), from the flow table's forward
/// (client -> origin) entries; `limits` by app slot (as in
/// `MapContents::client_limits`) gives each app's prefix lengths (the kernel's `client_limits()` in [`recount`]), and apps
/// without limits are left out.
pub fn count_flows<'a>(
    limits: &[ClientLimitValue],
    flows: impl IntoIterator<Item = (&'a FlowKey, &'a FlowValue)>,
) -> std::collections::HashMap<ClientKey, u32> {
    let mut counts = std::collections::HashMap::new();
    for (key, value) in flows {
        if value.direction != DIR_TO_ORIGIN {
            continue;
        }
        let Some(limit) = limits.get(value.app as usize).filter(|l| l.any()) else {
            continue;
        };
        let ipv6 = key.src[..12] != proxy_common::V4_MAPPED_PREFIX;
        let client = ClientKey {
            prefix: limit.prefix_of(&key.src, ipv6),
            app: value.app,
        };
        *counts.entry(client).or_default() += 1;
    }
    counts
}

/// Writes the live counts into `CLIENTS`: every entry whose count differs
/// is set to its live count (0 when it has no flow left). The rate state
/// (`tat_ns`) is read just before and written back with it: a new flow
/// the kernel admits in between may lose its token or its count (a race
/// in the client's favour, undone by the next pass). Returns the entries
/// changed. `flows`: the live forward entries the collector walked; runs
/// on the collector's thread, so its work (bounded by the map's size)
/// never holds up the main loop.
pub fn recount(
    clients: &mut HashMap<MapData, ClientKey, ClientValue>,
    limits: &[ClientLimitValue],
    flows: &[(FlowKey, FlowValue)],
) -> anyhow::Result<usize> {
    if !limits.iter().any(ClientLimitValue::any) {
        return Ok(0);
    }
    let counts = count_flows(limits, flows.iter().map(|(k, v)| (k, v)));
    // Keys first: writing while iterating may restart the kernel's walk.
    let keys: Vec<ClientKey> = clients
        .keys()
        .filter_map(Result::ok)
        .take(proxy_common::MAX_CLIENT_ENTRIES as usize * 2)
        .collect();
    let mut changed = 0;
    for key in keys {
        let Ok(mut value) = clients.get(&key, 0) else {
            continue;
        };
        let live = if key.app < MAX_APPS {
            counts.get(&key).copied().unwrap_or(0)
        } else {
            0
        };
        if value.flows != live {
            value.flows = live;
            // BPF_EXIST: an entry the LRU dropped meanwhile stays dropped.
            if clients.insert(key, value, 2).is_ok() {
                changed += 1;
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_common::DIR_TO_CLIENT;

    fn flow(src: [u8; 16], app: u32, direction: u8) -> (FlowKey, FlowValue) {
        (
            FlowKey {
                src,
                ..FlowKey::default()
            },
            FlowValue {
                app,
                direction,
                ..FlowValue::default()
            },
        )
    }

    fn v4(last: u8) -> [u8; 16] {
        crate::kernel::maps::addr16(std::net::IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn counts_forward_flows_per_app_and_prefix() {
        let limits = [
            ClientLimitValue::new(0, 1, 3, 24, 64),
            ClientLimitValue::default(),
            ClientLimitValue::new(0, 1, 3, 32, 64),
        ];
        let flows = [
            flow(v4(1), 0, DIR_TO_ORIGIN),
            flow(v4(2), 0, DIR_TO_ORIGIN),
            // The reply half of a flow is not a second flow.
            flow(v4(1), 0, DIR_TO_CLIENT),
            // An app without limits is not counted.
            flow(v4(1), 1, DIR_TO_ORIGIN),
            flow(v4(1), 2, DIR_TO_ORIGIN),
            flow(v4(2), 2, DIR_TO_ORIGIN),
        ];
        let counts = count_flows(&limits, flows.iter().map(|(k, v)| (k, v)));
        let mut net = v4(0);
        net[15] = 0;
        assert_eq!(counts.len(), 3);
        assert_eq!(
            counts[&ClientKey {
                prefix: net,
                app: 0
            }],
            2
        );
        assert_eq!(
            counts[&ClientKey {
                prefix: v4(1),
                app: 2
            }],
            1
        );
        assert_eq!(
            counts[&ClientKey {
                prefix: v4(2),
                app: 2
            }],
            1
        );
    }
}
