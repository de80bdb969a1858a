//! PROXY protocol headers come from the network in front of an `accept-proxy` listener:
//! whatever the bytes, parsing ends in a header, "need more" or an error — never a panic —
//! and a header never claims more bytes than were received.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(header)) = switchyard_proxyproto::parse(data) {
        assert!(header.length <= data.len());
    }
});
