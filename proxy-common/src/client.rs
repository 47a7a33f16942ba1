//! Per-client limits: `CLIENT_LIMITS` (each app's limits, by slot) and
//! `CLIENTS` (an LRU of per (app, client prefix) state), and the rate
//! check both the kernel and the agent's paths run.
//!
//! The rate is a token bucket kept as one number (GCRA): `tat_ns`, the
//! time the bucket would be full again. A new flow moves it one interval
//! on; a flow that would move it more than `burst` intervals past now is
//! refused. No division on the packet path, and one u64 to write.

/// Entries of `CLIENTS`: the LRU forgets the quietest clients first (a
/// forgotten client starts again with a full bucket).
pub const MAX_CLIENT_ENTRIES: u32 = 65_536;

/// Key of `CLIENTS`: an app slot and a client prefix (the address in the
/// 16-byte form, bits past the app's prefix length zeroed).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientKey {
    pub prefix: [u8; 16],
    pub app: u32,
}

/// Value of `CLIENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClientValue {
    /// GCRA's theoretical arrival time (`bpf_ktime_get_ns` clock).
    pub tat_ns: u64,
    /// Flows open now: the kernel adds one per flow it opens, the agent's
    /// flow collector writes the true count back each pass.
    pub flows: u32,
    pub _pad: u32,
}

/// Value of `CLIENT_LIMITS` (an array indexed by app slot). All zero: no
/// limit (a slot the agent has not written).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClientLimitValue {
    /// Nanoseconds between new flows at the sustained rate (0: no rate).
    pub interval_ns: u64,
    /// `interval_ns * burst`: how far past now `tat_ns` may go.
    pub burst_ns: u64,
    /// Flows open at once (0: no limit).
    pub max_flows: u32,
    /// Prefix lengths of a client, in their own family's bits.
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub _pad: [u8; 2],
}

impl ClientLimitValue {
    /// From a rate (per second, 0: none), a burst, a count and prefixes.
    pub const fn new(rate: u32, burst: u32, max_flows: u32, prefix_v4: u8, prefix_v6: u8) -> Self {
        let interval_ns = if rate == 0 {
            0
        } else {
            1_000_000_000 / rate as u64
        };
        Self {
            interval_ns,
            burst_ns: interval_ns * burst as u64,
            max_flows,
            prefix_v4,
            prefix_v6,
            _pad: [0; 2],
        }
    }

    /// Whether any limit applies (else the kernel skips `CLIENTS`).
    #[inline(always)]
    pub const fn any(&self) -> bool {
        self.interval_ns != 0 || self.max_flows != 0
    }

    /// `addr` (16-byte form) cut to the client prefix of its family.
    #[inline(always)]
    pub fn prefix_of(&self, addr: &[u8; 16], ipv6: bool) -> [u8; 16] {
        let bits = if ipv6 {
            self.prefix_v6 as u32
        } else {
            96 + self.prefix_v4 as u32
        };
        let mut out = *addr;
        let mut word = 0;
        while word < 4 {
            let keep = bits.saturating_sub(word * 32).min(32);
            if keep < 32 {
                let mask = if keep == 0 {
                    0
                } else {
                    u32::MAX << (32 - keep)
                };
                let i = (word * 4) as usize;
                let value = u32::from_be_bytes([out[i], out[i + 1], out[i + 2], out[i + 3]]) & mask;
                let bytes = value.to_be_bytes();
                out[i] = bytes[0];
                out[i + 1] = bytes[1];
                out[i + 2] = bytes[2];
                out[i + 3] = bytes[3];
            }
            word += 1;
        }
        out
    }
}

/// The rate check (GCRA): whether a new flow at `now_ns` fits, and if so
/// `tat_ns` moved on. `interval_ns` 0: always fits, unchanged.
#[inline(always)]
pub fn rate_admits(tat_ns: &mut u64, now_ns: u64, interval_ns: u64, burst_ns: u64) -> bool {
    if interval_ns == 0 {
        return true;
    }
    let next = if *tat_ns > now_ns { *tat_ns } else { now_ns }.saturating_add(interval_ns);
    if next - now_ns > burst_ns {
        return false;
    }
    *tat_ns = next;
    true
}

user_pod!(ClientKey, ClientValue, ClientLimitValue);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ClientKey>(), 16 + 4);
        assert_eq!(size_of::<ClientValue>(), 8 + 4 + 4);
        assert_eq!(size_of::<ClientLimitValue>(), 8 + 8 + 4 + 1 + 1 + 2);
    }

    #[test]
    fn the_bucket_gives_the_burst_at_once_then_the_rate() {
        let limits = ClientLimitValue::new(10, 3, 0, 32, 64);
        let (mut tat, start) = (0u64, 5_000_000_000u64);
        let admitted = (0..10)
            .filter(|_| rate_admits(&mut tat, start, limits.interval_ns, limits.burst_ns))
            .count();
        assert_eq!(admitted, 3);
        // One interval later, one more; not two.
        let later = start + limits.interval_ns;
        assert!(rate_admits(
            &mut tat,
            later,
            limits.interval_ns,
            limits.burst_ns
        ));
        assert!(!rate_admits(
            &mut tat,
            later,
            limits.interval_ns,
            limits.burst_ns
        ));
        // Quiet for long: the bucket is full again, and no fuller.
        let quiet = later + 60_000_000_000;
        let admitted = (0..10)
            .filter(|_| rate_admits(&mut tat, quiet, limits.interval_ns, limits.burst_ns))
            .count();
        assert_eq!(admitted, 3);
        // No rate: everything fits.
        let mut tat = 0;
        assert!((0..1000).all(|_| rate_admits(&mut tat, 1, 0, 0)));
    }

    #[test]
    fn prefixes_cut_each_family_at_its_own_length() {
        let limits = ClientLimitValue::new(0, 1, 1, 24, 64);
        let mut v4 = [0u8; 16];
        v4[10] = 0xff;
        v4[11] = 0xff;
        v4[12..].copy_from_slice(&[192, 0, 2, 77]);
        let mut want = v4;
        want[15] = 0;
        assert_eq!(limits.prefix_of(&v4, false), want);
        let v6 = [
            0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let mut want = v6;
        want[8..].fill(0);
        assert_eq!(limits.prefix_of(&v6, true), want);
        let odd = ClientLimitValue::new(0, 1, 1, 32, 60);
        assert_eq!(odd.prefix_of(&v6, true)[7], 0);
        assert_eq!(odd.prefix_of(&v6, true)[6], 3);
        assert_eq!(odd.prefix_of(&v4, false), v4);
        let full = ClientLimitValue::new(0, 1, 1, 32, 128);
        assert_eq!(full.prefix_of(&v6, true), v6);
    }
}
