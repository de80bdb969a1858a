//! What a PostgreSQL server answers to `option pgsql-check`'s StartupMessage. The check reads
//! in pieces and asks the parser after each one, so besides never panicking the parser must be
//! consistent: once a prefix gives a verdict, the whole input gives the same one, and with
//! `last` (end of stream) it never asks for more bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_health::kinds::pgsql::{parse_first_message, First};

fuzz_target!(|data: &[u8]| {
    let whole = parse_first_message(data, false);
    assert_ne!(parse_first_message(data, true), First::Incomplete);
    // A few cut points stand for the pieces a socket may deliver.
    for cut in [1, 5, 8, 9, data.len() / 2, data.len().saturating_sub(1)] {
        let Some(prefix) = data.get(..cut) else {
            continue;
        };
        let partial = parse_first_message(prefix, false);
        if partial != First::Incomplete {
            assert_eq!(partial, whole, "verdict changed after {cut} bytes");
        }
        assert_ne!(parse_first_message(prefix, true), First::Incomplete);
    }
});
