//! Per-client limits on new flows: before the fast path opens a flow, the
//! client's prefix (per app) must have a token (new flows a second, with
//! a burst) and room under its concurrent-flow bound; else the packet is
//! dropped (`client_limited`) and sampled into the block-event log.
//!
//! Entries are shared by all CPUs and updated without a lock: two CPUs
//! opening flows of one client at the same instant may both pass the last
//! token or the last flow slot, so a client may get a few flows past its
//! bound (at most one per CPU racing), and an increment may be lost (core
//! has no atomics for the BPF target; a lost one errs toward the client).
//! The count only ever rises here; the agent's flow collector writes the
//! true count back after each complete walk of the flow tables.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, LruHashMap},
};
use proxy_common::{
    ClientKey, ClientLimitValue, ClientValue, MAX_APPS, MAX_CLIENT_ENTRIES, Verdict, rate_admits,
};

use crate::{parse::Packet, rules};

/// Each app's limits, by slot (all zero: none).
#[map]
static CLIENT_LIMITS: Array<ClientLimitValue> = Array::with_max_entries(MAX_APPS, 0);

#[map]
static CLIENTS: LruHashMap<ClientKey, ClientValue> =
    LruHashMap::with_max_entries(MAX_CLIENT_ENTRIES, 0);

/// Whether the packet's client may open one more flow of app `app`; when
/// it may, its token is taken and its flow counted.
///
/// Not inlined: the key and the value live in this function's own stack
/// frame (see `rules::check`); passed to the helpers by reference, as
/// `conntrack::open` does (by value, the copies overflow the 512-byte stack).
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(never)]
pub fn admit(packet: &Packet, app: u32) -> bool {
    let Some(limits) = CLIENT_LIMITS.get(app) else {
        return true;
    };
    if !limits.any() {
        return true;
    }
    let key = ClientKey {
        prefix: limits.prefix_of(&packet.src, packet.ipv6),
        app,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let entry = match CLIENTS.get_ptr_mut(&key) {
        Some(entry) => entry,
        None => {
            let mut fresh = ClientValue::default();
            // A new client: its first flow always fits (burst >= 1).
            let _ = rate_admits(&mut fresh.tat_ns, now, limits.interval_ns, limits.burst_ns);
            fresh.flows = 1;
            // Another CPU may have inserted it meanwhile: theirs or ours,
            // one flow is lost from the count until the agent's recount.
            let _ = CLIENTS.insert(&key, &fresh, 0);
            return true;
        }
    };
    // SAFETY: points into the map, valid for this program run.
    let entry = unsafe { &mut *entry };
    if limits.max_flows != 0 && entry.flows >= limits.max_flows {
        refused(packet, app);
        return false;
    }
    let mut tat = entry.tat_ns;
    if !rate_admits(&mut tat, now, limits.interval_ns, limits.burst_ns) {
        refused(packet, app);
        return false;
    }
    if tat != entry.tat_ns {
        entry.tat_ns = tat;
    }
    entry.flows = entry.flows.saturating_add(1);
    true
}

#[inline(always)]
fn refused(packet: &Packet, app: u32) {
    rules::report(packet, app, u32::MAX, Verdict::ClientLimited);
}
