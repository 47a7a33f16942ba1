//! IP protocol numbers and the 16-byte address form every map key uses.

/// IP protocol numbers the data path knows.
pub mod ip_proto {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// The first 12 bytes of an IPv4-mapped IPv6 address.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Maps an IPv4 address (network order bytes) into the 16-byte form.
#[inline(always)]
pub const fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapped_matches_std() {
        assert_eq!(
            v4_mapped([192, 0, 2, 1])[..12],
            V4_MAPPED_PREFIX[..],
            "prefix"
        );
        assert_eq!(v4_mapped([192, 0, 2, 1])[12..], [192, 0, 2, 1]);
    }
}
