//! Which application answers on (protocol, edge address, port).
use aya_ebpf::{macros::map, maps::HashMap};
use proxy_common::{ListenerKey, ListenerValue, MAX_APPS, MAX_LISTENERS};

use crate::parse::Packet;

/// Port ranges are expanded per port by the agent: one lookup per packet,
/// whatever the size of the range.
#[map]
static LISTENERS: HashMap<ListenerKey, ListenerValue> = HashMap::with_max_entries(MAX_LISTENERS, 0);

/// The app index for the packet's destination, if any app listens there.
#[inline(always)]
pub fn lookup(packet: &Packet) -> Option<u32> {
    lookup_key(&ListenerKey::new(packet.proto, packet.dst, packet.dst_port))
}

/// The app index for (protocol, edge address, port).
#[inline(always)]
pub fn lookup_key(key: &ListenerKey) -> Option<u32> {
    let app = unsafe { LISTENERS.get(key) }?.app;
    // An index past the table would be an agent bug; treat it as no listener
    // rather than index out of the counters.
    if app < MAX_APPS { Some(app) } else { None }
}
