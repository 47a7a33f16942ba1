//! Shared by the BPF_PROG_TEST_RUN fixture suites.
use aya::{TestRun as _, TestRunOptions};
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

/// Runs the XDP program once on `frame`: its return value (the action).
// Each suite compiles this module on its own; not all of them run frames this way.
#[allow(dead_code)]
pub fn run_frame(datapath: &mut Datapath, frame: &[u8]) -> u32 {
    let mut out = vec![0u8; frame.len() + 256];
    datapath
        .program()
        .expect("program")
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}
