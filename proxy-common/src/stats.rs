//! `STATS`: per-CPU packet and byte counters, one row of verdicts per app
//! plus a global row for packets that belong to no app.

use crate::limits::MAX_APPS;
use crate::verdict::Verdict;

/// Counter slot for packets that belong to no application.
pub const GLOBAL_SLOT: u32 = MAX_APPS;
/// Entries of `STATS`: one row of verdicts per app, plus the global row.
pub const STATS_ENTRIES: u32 = (MAX_APPS + 1) * Verdict::COUNT;

/// Index in `STATS` of (app slot or `GLOBAL_SLOT`, verdict).
#[inline(always)]
pub const fn stats_index(slot: u32, verdict: Verdict) -> u32 {
    slot * Verdict::COUNT + verdict as u32
}

/// Value of `STATS` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

user_pod!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Counter>(), 16);
    }

    #[test]
    fn stats_rows_do_not_overlap() {
        let last = Verdict::ALL[Verdict::COUNT as usize - 1];
        let last_app = stats_index(MAX_APPS - 1, last);
        let first_global = stats_index(GLOBAL_SLOT, Verdict::NoListener);
        assert_eq!(last_app + 1, first_global);
        assert_eq!(stats_index(GLOBAL_SLOT, last) + 1, STATS_ENTRIES);
        // ALL lists each verdict once, in code order.
        for (i, verdict) in Verdict::ALL.iter().enumerate() {
            assert_eq!(*verdict as usize, i, "{}", verdict.name());
        }
    }
}
