//! The agent paths' live connections (TCP) and flows (UDP), by client and
//! app slot: a rule change that blocks a client cuts them, whichever
//! version of their app they started on. sk_lookup and XDP check only new
//! connections and datagrams (XDP only the packets it parses), so without
//! this an open connection outlives any later block rule.
//!
//! Bounded by the paths' own limits (`max_connections`, `max_flows`): an
//! entry exists only while its connection or flow does.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

/// The registry of one path.
#[derive(Default)]
pub struct Live(Mutex<Table>);

#[derive(Default)]
struct Table {
    next: u64,
    entries: HashMap<u64, Entry>,
}

struct Entry {
    client: IpAddr,
    edge: SocketAddr,
    slot: u32,
    cut: Arc<Notify>,
}

/// One live connection or flow: listed until dropped.
pub struct Registered {
    live: Arc<Live>,
    id: u64,
    cut: Arc<Notify>,
}

impl Live {
    /// Lists a connection or flow of `client` to `edge`, counted in app
    /// slot `slot`.
    pub fn register(self: &Arc<Self>, client: IpAddr, edge: SocketAddr, slot: u32) -> Registered {
        let cut = Arc::new(Notify::new());
        let id = match self.0.lock() {
            Ok(mut table) => {
                table.next += 1;
                let id = table.next;
                table.entries.insert(
                    id,
                    Entry {
                        client: client.to_canonical(),
                        edge,
                        slot,
                        cut: Arc::clone(&cut),
                    },
                );
                id
            }
            // A poisoned lock (a panic elsewhere): the entry goes unlisted.
            Err(_) => 0,
        };
        Registered {
            live: Arc::clone(self),
            id,
            cut,
        }
    }

    /// Cuts every listed connection or flow for which `cut` (client, edge
    /// address and port, app slot) is true; returns how many per slot.
    pub fn cut_where(
        &self,
        mut cut: impl FnMut(IpAddr, SocketAddr, u32) -> bool,
    ) -> BTreeMap<u32, u64> {
        let mut counted = BTreeMap::new();
        let Ok(table) = self.0.lock() else {
            return counted;
        };
        for entry in table.entries.values() {
            if cut(entry.client, entry.edge, entry.slot) {
                // A stored permit: a task not yet waiting sees it when it does.
                entry.cut.notify_one();
                *counted.entry(entry.slot).or_default() += 1;
            }
        }
        counted
    }

    /// How many are listed.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |table| table.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registered {
    /// Resolves once the connection or flow is cut.
    pub async fn cut(&self) {
        self.cut.notified().await;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut table) = self.live.0.lock() {
            table.entries.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_matching_entries_are_cut_and_dropped_ones_leave() {
        let live = Arc::new(Live::default());
        let edge: SocketAddr = "192.0.2.1:443".parse().expect("addr");
        let blocked: IpAddr = "198.51.100.7".parse().expect("ip");
        let other: IpAddr = "198.51.100.8".parse().expect("ip");
        let a = live.register(blocked, edge, 3);
        let b = live.register(other, edge, 3);
        let c = live.register("::ffff:198.51.100.7".parse().expect("ip"), edge, 5);
        let cut = live.cut_where(|client, _, _| client == blocked);
        assert_eq!(cut, BTreeMap::from([(3, 1), (5, 1)]));
        // Both cut ones resolve (the permit was stored before they waited).
        a.cut().await;
        c.cut().await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), b.cut())
                .await
                .is_err()
        );
        drop((a, b, c));
        assert!(live.is_empty());
    }
}
