//! The configuration parser must never panic, whatever an operator (or a broken template)
//! feeds it: every input ends in a model or in diagnostics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_config::{parse_sources, Source};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let sources = [Source { name: "fuzz.cfg".into(), text }];
    if let Err(diagnostics) = parse_sources(&sources) {
        // Every diagnostic must render (file:line: message) without panicking.
        let _ = diagnostics.to_string();
    }
});
