//! VRRP advertisements come from the link: whatever arrives on protocol 112 (forged,
//! truncated, another version), decoding ends in an advertisement or an error — never a
//! panic.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use switchyard_ha::packet::{decode_datagram, Advertisement, MULTICAST_GROUP};

fuzz_target!(|data: &[u8]| {
    let _ = decode_datagram(data);
    let _ = Advertisement::decode(data, Ipv4Addr::new(10, 0, 0, 1), MULTICAST_GROUP);
});
