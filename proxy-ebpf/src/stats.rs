//! Per-CPU counters: one row of verdicts per application plus a global row.
use aya_ebpf::{macros::map, maps::PerCpuArray};
use proxy_common::{Counter, STATS_ENTRIES, Verdict, stats_index};

#[map]
static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_ENTRIES, 0);

#[inline(always)]
pub fn count(slot: u32, verdict: Verdict, bytes: u64) {
    if let Some(counter) = STATS.get_ptr_mut(stats_index(slot, verdict)) {
        // Per-CPU: no other program instance touches this slot concurrently.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}
