//! The line an `agent-check` agent answers (`up 75% maxconn:10 #comment`...): parsed into
//! operations or a reason to ignore it, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_health::kinds::parse_agent_line;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_agent_line(data);
    let _ = parsed.info();
});
