//! Incremental Internet checksum updates (RFC 1624, eqn. 3):
//! `HC' = ~(~HC + ~m + m')`, applied one 16-bit word at a time.
//!
//! Pure functions over values, shared by the XDP program and host tests, so
//! each is checked against a full recomputation without a kernel.

/// Folds a 32-bit one's-complement sum into 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Adds the replacement of `old` by `new` (16-bit words, any byte order as
/// long as it is the same as the checksum's) to an unfolded sum.
#[inline(always)]
const fn add_word(sum: u32, old: u16, new: u16) -> u32 {
    sum + (!old as u32) + (new as u32)
}

/// The checksum after one 16-bit field changed from `old` to `new`.
/// `check`, `old` and `new` are read from the packet the same way (e.g. all
/// with `u16::from_be_bytes`).
#[inline(always)]
pub const fn replace_u16(check: u16, old: u16, new: u16) -> u16 {
    !fold(add_word(!check as u32, old, new))
}

/// The checksum after 4 bytes (an IPv4 address) changed.
#[inline(always)]
pub const fn replace_4(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let mut sum = !check as u32;
    sum = add_word(
        sum,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    sum = add_word(
        sum,
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    );
    !fold(sum)
}

/// The checksum after 16 bytes (an IPv6 address) changed.
#[inline(always)]
pub const fn replace_16(check: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut sum = !check as u32;
    let mut i = 0;
    while i < 16 {
        sum = add_word(
            sum,
            u16::from_be_bytes([old[i], old[i + 1]]),
            u16::from_be_bytes([new[i], new[i + 1]]),
        );
        // Fold as we go so eight words cannot overflow.
        sum = fold(sum) as u32;
        i += 2;
    }
    !fold(sum)
}

/// A UDP-over-IPv4 checksum after an update: 0 means "no checksum" on the
/// wire, so a computed 0 is sent as 0xffff (RFC 768).
#[inline(always)]
pub const fn udp_nonzero(check: u16) -> u16 {
    if check == 0 { 0xffff } else { check }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Full RFC 1071 checksum over big-endian words.
    fn full(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for chunk in bytes.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += word as u32;
        }
        !fold(sum)
    }

    /// A deterministic byte stream (xorshift), so failures reproduce.
    fn bytes(seed: u32, n: usize) -> Vec<u8> {
        let mut x = seed.max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn replace_16_matches_full_recomputation() {
        for seed in 1..500 {
            let mut data = bytes(seed, 64);
            let check = full(&data);
            let old: [u8; 16] = data[8..24].try_into().unwrap();
            let new: [u8; 16] = bytes(seed + 7919, 16).try_into().unwrap();
            data[8..24].copy_from_slice(&new);
            assert_eq!(replace_16(check, &old, &new), full(&data), "seed {seed}");
        }
    }

    #[test]
    fn replace_4_and_u16_match_full_recomputation() {
        for seed in 1..500 {
            let mut data = bytes(seed, 40);
            let check = full(&data);
            let old4: [u8; 4] = data[12..16].try_into().unwrap();
            let new4: [u8; 4] = bytes(seed * 31, 4).try_into().unwrap();
            data[12..16].copy_from_slice(&new4);
            let check = replace_4(check, old4, new4);
            assert_eq!(check, full(&data), "seed {seed} addr");
            let old = u16::from_be_bytes([data[20], data[21]]);
            let new = (seed as u16).wrapping_mul(40503);
            data[20..22].copy_from_slice(&new.to_be_bytes());
            assert_eq!(
                replace_u16(check, old, new),
                full(&data),
                "seed {seed} port"
            );
        }
    }

    #[test]
    fn a_checksummed_block_still_verifies_after_updates() {
        // Store the checksum inside the data: the whole must sum to zero.
        let mut data = bytes(42, 20);
        data[10] = 0;
        data[11] = 0;
        let check = full(&data);
        data[10..12].copy_from_slice(&check.to_be_bytes());
        assert_eq!(full(&data), 0);
        let old: [u8; 4] = data[12..16].try_into().unwrap();
        let new = [10, 0, 2, 1];
        data[12..16].copy_from_slice(&new);
        let check = replace_4(check, old, new);
        data[10..12].copy_from_slice(&check.to_be_bytes());
        assert_eq!(full(&data), 0);
    }

    #[test]
    fn udp_zero_is_sent_as_all_ones() {
        assert_eq!(udp_nonzero(0), 0xffff);
        assert_eq!(udp_nonzero(0x1234), 0x1234);
    }
}
