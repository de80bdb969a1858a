//! What a MySQL server sends to `option mysql-check`: a greeting packet, then (with `user`)
//! the reply to the authentication. Framing never claims bytes that were not received, and
//! the greeting and ERR parsers end in a verdict, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_health::kinds::mysql;

fuzz_target!(|data: &[u8]| {
    // The whole input as one payload, as if the framing were already done.
    let _ = mysql::parse_greeting(data);
    let _ = mysql::parse_error(data);
    // The input as the byte stream the check reads: greeting packet, then the reply packet.
    let Some(greeting) = mysql::packet_at(data, 0) else {
        return;
    };
    assert!(greeting.start <= greeting.end && greeting.end <= data.len());
    if let mysql::Greeting::Handshake { version } = mysql::parse_greeting(&data[greeting.clone()]) {
        assert!(!version.is_empty());
    }
    if let Some(reply) = mysql::packet_at(data, greeting.end) {
        assert!(reply.start <= reply.end && reply.end <= data.len());
        let _ = mysql::parse_error(&data[reply]);
    }
});
