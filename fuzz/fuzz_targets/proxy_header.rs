//! PROXY v1/v2 headers from untrusted peers: `parse` (and the two decoders
//! it dispatches to) must never panic, and a decoded header never claims
//! more bytes than it was given or than its version allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_agent::proxy::header::{V1_MAX_LEN, V2_MAX_LEN, V2_SIGNATURE, parse, parse_v1, parse_v2};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = parse(data) {
        assert!(decoded.len <= data.len());
        assert!(decoded.len <= V1_MAX_LEN.max(V2_MAX_LEN));
        // `parse` picks by the first byte; the decoder it picked agrees.
        let direct = if data[0] == V2_SIGNATURE[0] {
            parse_v2(data)
        } else {
            parse_v1(data)
        };
        assert_eq!(direct, Ok(decoded));
    }
    if let Ok(decoded) = parse_v1(data) {
        assert!(decoded.len <= data.len().min(V1_MAX_LEN));
        assert!(data[..decoded.len].ends_with(b"\r\n"));
    }
    if let Ok(decoded) = parse_v2(data) {
        assert!(decoded.len <= data.len().min(V2_MAX_LEN));
    }
});
