//! The application table, each application's origins and the edge-wide NAT
//! settings, all filled by the agent.
use aya_ebpf::{macros::map, maps::Array};
use proxy_common::{
    AppValue, MAX_APPS, ORIGIN_ENTRIES, OriginValue, Settings, SettingsFlags, origin_index,
    tc_only_flag,
};

#[map]
static APPS: Array<AppValue> = Array::with_max_entries(MAX_APPS, 0);

/// Indexed by `proxy_common::origin_index(app, ipv6, slot)`.
#[map]
static ORIGINS: Array<OriginValue> = Array::with_max_entries(ORIGIN_ENTRIES, 0);

#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// The configured app at `index` when it serves `proto`. A listener that
/// points at an empty or different slot is stale (the agent is mid-update)
/// and must not be acted on.
#[inline(always)]
pub fn app_for(index: u32, proto: u8) -> Option<&'static AppValue> {
    let app = APPS.get(index)?;
    if app.proto == proto { Some(app) } else { None }
}

/// One of the app's origins of the given family, chosen by `pick` (a hash
/// of the client's tuple, so flows spread over the origins and a client
/// tuple keeps its origin across agent runs).
#[inline(always)]
pub fn origin_for(
    index: u32,
    app: &AppValue,
    ipv6: bool,
    pick: u32,
) -> Option<&'static OriginValue> {
    let count = app.origin_count(ipv6) as u32;
    if count == 0 {
        return None;
    }
    let slot = crate::conntrack::scale(pick, count);
    let origin = ORIGINS.get(origin_index(index, ipv6, slot))?;
    // A slot cleared while the agent shrinks the list: no origin this time.
    if origin.addr == [0; 16] {
        None
    } else {
        Some(origin)
    }
}

#[inline(always)]
pub fn settings() -> Option<&'static Settings> {
    SETTINGS.get(0)
}

/// Whether TC ingress has `proto` alone (`SettingsFlags::TC_ONLY_*`): no app of
/// it needs XDP, so XDP passes it at once and TC counts it.
#[inline(always)]
pub fn tc_only(proto: u8) -> bool {
    settings().is_some_and(|settings| settings.flags.intersects(tc_only_flag(proto)))
}

/// Whether TC drops unlisted packets of every protocol: XDP is not
/// attached to do it (`SettingsFlags::UNLISTED_AT_TC`).
#[inline(always)]
pub fn unlisted_at_tc() -> bool {
    settings().is_some_and(|settings| settings.flags.contains(SettingsFlags::UNLISTED_AT_TC))
}
