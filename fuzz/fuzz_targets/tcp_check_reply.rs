//! What a server answers to a `tcp-check` ruleset, evaluated by `tcp-check expect` rules of
//! each kind (string, binary, rstring, rbinary; negated; with `min-recv`). Never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchyard_config::{TcpExpect, TcpMatch};
use switchyard_health::kinds::tcpcheck::{evaluate, Matcher};

/// Compiled once: building regexes is not what is being fuzzed.
fn rules() -> &'static [(TcpExpect, Matcher)] {
    static RULES: OnceLock<Vec<(TcpExpect, Matcher)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let matchers = [
            TcpMatch::String("+OK".into()),
            TcpMatch::Binary(vec![0, 0xff]),
            TcpMatch::RString("^[0-9]{3} ".into()),
            TcpMatch::RBinary("^52000000(08|0A)".into()),
        ];
        let mut rules = Vec::new();
        for matcher in matchers {
            for (negate, min_recv) in [(false, None), (true, Some(3))] {
                if let Ok(compiled) = Matcher::new(&matcher) {
                    let expect = TcpExpect {
                        negate,
                        matcher: matcher.clone(),
                        min_recv,
                    };
                    rules.push((expect, compiled));
                }
            }
        }
        rules
    })
}

fuzz_target!(|data: &[u8]| {
    for (expect, matcher) in rules() {
        let _ = evaluate(expect, matcher, data, false);
        let _ = evaluate(expect, matcher, data, true);
    }
});
