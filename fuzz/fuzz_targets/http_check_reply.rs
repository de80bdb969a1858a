//! What a server answers to `option httpchk`: status line, headers (interim responses,
//! chunked or sized bodies), evaluated against `http-check expect` rules. Never a panic; at
//! end of stream the parser concludes instead of asking for more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_config::{HttpExpect, HttpMatch};
use switchyard_health::kinds::http::{evaluate, parse_response, Parsed};

fuzz_target!(|data: &[u8]| {
    let expects = [
        None,
        Some(HttpExpect {
            negate: false,
            matcher: HttpMatch::Status(vec![(200, 399)]),
        }),
        Some(HttpExpect {
            negate: true,
            matcher: HttpMatch::String("maintenance".into()),
        }),
    ];
    for (head, last) in [(false, false), (false, true), (true, false), (true, true)] {
        match parse_response(data, head, last) {
            Parsed::Incomplete => assert!(!last, "incomplete at end of stream"),
            Parsed::Invalid(_) => {}
            Parsed::Done(response) => {
                assert!(response.body.len() <= data.len());
                for expect in &expects {
                    let _ = evaluate(&response, expect.as_ref());
                }
            }
        }
    }
});
