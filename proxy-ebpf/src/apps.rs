//! The application table and each application's origins, filled by the agent.
use aya_ebpf::{macros::map, maps::Array};
use proxy_common::{AppValue, MAX_APPS, MAX_ORIGINS_PER_APP, OriginValue};

#[map]
static APPS: Array<AppValue> = Array::with_max_entries(MAX_APPS, 0);

/// Indexed by `proxy_common::origin_index(app, slot)`; read by the NAT stage.
#[map]
static ORIGINS: Array<OriginValue> = Array::with_max_entries(MAX_APPS * MAX_ORIGINS_PER_APP, 0);

/// The configured app at `index` when it serves `proto`. A listener that
/// points at an empty or different slot is stale (the agent is mid-update)
/// and must not be acted on.
#[inline(always)]
pub fn app_for(index: u32, proto: u8) -> Option<&'static AppValue> {
    let app = APPS.get(index)?;
    if app.proto == proto { Some(app) } else { None }
}
