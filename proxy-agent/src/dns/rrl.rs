//! Response-rate limiting (RRL, as BIND's `rate-limit`): an authoritative
//! server on UDP answers whoever the source address claims to be, so a
//! spoofed flood turns it into a reflector aimed at that address. Each
//! client prefix (/24, /56: one host's or one site's addresses) gets
//! [`ResponseLimit::per_second`] responses a second (a second's worth of
//! burst); past it, every [`SLIP`]th response goes out truncated (TC=1, no
//! records: no larger than the query, and a real client retries over TCP,
//! which a spoofer cannot), the others are dropped. TCP is not limited:
//! its handshake proves the address.
//!
//! Bounded: at most [`MAX_PREFIXES`] prefixes are tracked; idle ones (bucket
//! full again) are swept out when the table is full, at most once a
//! second; until then a new prefix is treated as over its rate.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::Instant,
};

/// Prefixes tracked at once.
pub const MAX_PREFIXES: usize = 65_536;
/// Of the responses over the rate, one in this many is sent truncated.
pub const SLIP: u32 = 2;
/// The client prefix lengths one bucket covers.
const V4_PREFIX: u8 = 24;
const V6_PREFIX: u8 = 56;

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send,
    /// Over the rate: send only the header and question, with TC=1.
    Truncate,
    /// Over the rate: send nothing.
    Drop,
}

/// The per-prefix buckets (what they held back is counted by the
/// handler, in [`super::DnsAnswers`]).
#[derive(Debug)]
pub struct ResponseLimit {
    per_second: u32,
    table: Mutex<Table>,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Table {
    /// Theoretical arrival time (GCRA), ns since `epoch`, and the responses
    /// held back since the last one sent (for the slip).
    buckets: HashMap<[u8; 17], (u64, u32)>,
    last_sweep_ns: u64,
}

impl ResponseLimit {
    /// `per_second` responses a second per client prefix (at least 1).
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            table: Mutex::default(),
            epoch: Instant::now(),
        }
    }

    /// The action for one more response to `client`.
    pub fn check(&self, client: IpAddr) -> Action {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(client, now)
    }

    fn check_at(&self, client: IpAddr, now: u64) -> Action {
        let interval = 1_000_000_000 / u64::from(self.per_second);
        let burst = interval * u64::from(self.per_second);
        let key = prefix_key(client);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.buckets.contains_key(&key) && table.buckets.len() >= MAX_PREFIXES {
            if now.saturating_sub(table.last_sweep_ns) >= 1_000_000_000 {
                table.last_sweep_ns = now;
                table.buckets.retain(|_, (tat, _)| *tat > now);
            }
            if table.buckets.len() >= MAX_PREFIXES {
                return Action::Truncate;
            }
        }
        let (tat, held) = table.buckets.entry(key).or_insert((now, 0));
        let start = (*tat).max(now);
        if start - now >= burst {
            *held += 1;
            return if *held % SLIP == 0 {
                Action::Truncate
            } else {
                Action::Drop
            };
        }
        *tat = start + interval;
        *held = 0;
        Action::Send
    }
}

/// The bucket of `ip`: its family and its /24 or /56.
fn prefix_key(ip: IpAddr) -> [u8; 17] {
    let mut key = [0u8; 17];
    let (family, bytes, bits): (u8, Vec<u8>, u8) = match ip.to_canonical() {
        IpAddr::V4(v4) => (4, v4.octets().to_vec(), V4_PREFIX),
        IpAddr::V6(v6) => (6, v6.octets().to_vec(), V6_PREFIX),
    };
    key[0] = family;
    let whole = usize::from(bits / 8);
    key[1..=whole].copy_from_slice(&bytes[..whole]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_prefix_gets_its_rate_then_slips_and_drops_others_are_unaffected() {
        let limit = ResponseLimit::new(10);
        let t0 = 5_000_000_000;
        // A second's worth at once, from the whole /24.
        for i in 0..10 {
            let client = ip(&format!("192.0.2.{i}"));
            assert_eq!(limit.check_at(client, t0), Action::Send, "{i}");
        }
        let over: Vec<Action> = (0..6)
            .map(|_| limit.check_at(ip("192.0.2.77"), t0))
            .collect();
        use Action::*;
        assert_eq!(over, [Drop, Truncate, Drop, Truncate, Drop, Truncate]);
        // Another /24, and an IPv6 client, have their own buckets.
        assert_eq!(limit.check_at(ip("192.0.3.1"), t0), Send);
        assert_eq!(limit.check_at(ip("2001:db8::1"), t0), Send);
        // One interval later, one more response.
        let later = t0 + 100_000_000;
        assert_eq!(limit.check_at(ip("192.0.2.1"), later), Send);
        assert_eq!(limit.check_at(ip("192.0.2.1"), later), Drop);
        // IPv4-mapped is the same client as IPv4.
        assert_eq!(limit.check_at(ip("::ffff:192.0.2.9"), later), Truncate);
    }

    #[test]
    fn a_v6_bucket_is_a_56() {
        assert_eq!(
            prefix_key(ip("2001:db8:0:ff::1")),
            prefix_key(ip("2001:db8:0:1::2"))
        );
        assert_ne!(
            prefix_key(ip("2001:db8:0:100::1")),
            prefix_key(ip("2001:db8::1"))
        );
        assert_ne!(prefix_key(ip("10.0.0.1")), prefix_key(ip("::a00:1")));
    }

    #[test]
    fn the_table_is_bounded_and_idle_prefixes_are_swept() {
        let limit = ResponseLimit::new(1);
        let t0 = 10_000_000_000;
        let prefix = |i: usize| IpAddr::from([10, (i >> 8) as u8, i as u8, 1]);
        for i in 0..MAX_PREFIXES {
            assert_eq!(limit.check_at(prefix(i), t0), Action::Send);
        }
        // Full, nothing idle: a new prefix is held back.
        assert_eq!(limit.check_at(ip("192.0.2.1"), t0), Action::Truncate);
        // Two seconds on, every bucket is full again: swept, admitted.
        assert_eq!(
            limit.check_at(ip("192.0.2.1"), t0 + 2_000_000_000),
            Action::Send
        );
        assert_eq!(limit.table.lock().unwrap().buckets.len(), 1);
    }
}
