//! Counter snapshots for BPF_PROG_TEST_RUN fixtures: which (app, verdict)
//! counters a frame moved, and by how much.
use std::collections::BTreeMap;

/// A counter: (app index, or None for the global row; verdict name).
pub type Move = (Option<u32>, &'static str);

/// Counter -> packets.
pub type Counts = BTreeMap<Move, u64>;

/// Each counter that moved between two snapshots, once per packet, sorted.
pub fn moved(before: &Counts, after: &Counts) -> Vec<Move> {
    let mut moves = Vec::new();
    for (key, n) in after {
        for _ in 0..n - before.get(key).copied().unwrap_or(0) {
            moves.push(*key);
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_lists_each_increment() {
        let before: Counts = [((Some(0), "to_origin"), 1)].into();
        let after: Counts = [((Some(0), "to_origin"), 3), ((None, "not_ip"), 1)].into();
        assert_eq!(
            moved(&before, &after),
            vec![
                (None, "not_ip"),
                (Some(0), "to_origin"),
                (Some(0), "to_origin")
            ]
        );
    }
}
