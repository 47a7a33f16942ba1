//! The benchmark's packet sink: counts and drops IPv4 UDP at the origin's
//! interface, so a flood's delivered rate is not capped by the origin's
//! own stack. Everything else passes.
use aya_ebpf::{
    bindings::xdp_action, macros::map, macros::xdp, maps::PerCpuArray, programs::XdpContext,
};

use proxy_ebpf::hook::ptr_at;

#[map]
static SINK_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn sink(ctx: XdpContext) -> u32 {
    // Ethernet type at 12, IPv4 protocol at 14 + 9 = 23.
    let Ok(header) = ptr_at::<[u8; 24]>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let header = unsafe { &*header };
    if header[12] != 0x08 || header[13] != 0x00 || header[23] != 17 {
        return xdp_action::XDP_PASS;
    }
    if let Some(count) = SINK_COUNT.get_ptr_mut(0) {
        unsafe { *count += 1 };
    }
    xdp_action::XDP_DROP
}
