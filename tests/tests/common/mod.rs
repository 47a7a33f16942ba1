//! Shared by the BPF_PROG_TEST_RUN fixture suites.
use proxy_agent::datapath::{loader::Datapath, stats};
pub use tests::counters::{Counts, moved};

/// The non-zero counters of the first `apps` apps and the global row.
pub fn counts(datapath: &mut Datapath, apps: u32) -> Counts {
    let map = datapath.stats().expect("stats map");
    stats::read(&map, apps)
        .expect("read stats")
        .into_iter()
        .map(|row| ((row.app, row.verdict.name()), row.packets))
        .collect()
}
