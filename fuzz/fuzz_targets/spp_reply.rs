//! An origin's reply on the SPP path: any bytes at all reach
//! `parse_spp`. It must never panic, and an accepted datagram is a 38-byte
//! header and the payload after it, nothing lost or added.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_agent::proxy::header::{SPP_LEN, parse_spp};

fuzz_target!(|data: &[u8]| {
    if let Ok((_, payload)) = parse_spp(data) {
        assert_eq!(payload.len(), data.len() - SPP_LEN);
        assert!(std::ptr::eq(payload, &data[SPP_LEN..]));
    }
});
