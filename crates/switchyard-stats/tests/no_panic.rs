//! Every parser of client input survives arbitrary text: no panic, whatever the bytes
//! (deterministic pseudo-random inputs built from the characters that matter to them).

use switchyard_stats::{admin, data, prometheus, request};

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn text(&mut self, alphabet: &[&str], max: usize) -> String {
        let len = (self.next() % max as u64) as usize;
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
            .collect()
    }
}

const ALPHABET: &[&str] = &[
    "%",
    "%2",
    "%25",
    "%zz",
    "%e9",
    "%C3%A9",
    "%00",
    "+",
    "&",
    "=",
    ";",
    "#",
    ":",
    "/",
    "?",
    "\"",
    ",",
    " ",
    "\\",
    "\n",
    "\r",
    "\t",
    "é",
    "€",
    "𝄞",
    "\u{0}",
    "a",
    "b",
    "s",
    "w",
    "1",
    "9",
    "b=",
    "s=",
    "action=",
    "w=",
    "scope=",
    "no-maint",
    "csv",
    "json",
    "info",
    "up",
    "st=DONE",
    "ready",
    "drain",
    "weight",
    "#",
    "Basic ",
    "basic ",
    "YWRtaW46eA==",
    "=",
    "==",
];

#[test]
fn parsers_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let auths = vec![("admin".to_string(), "x".to_string())];
    for _ in 0..20_000 {
        let text = rng.text(ALPHABET, 24);
        let _ = request::parse_options(&text);
        let _ = request::percent_decode(&text, true);
        let _ = request::percent_decode(&text, false);
        let _ = request::parse_pairs(&text);
        let _ = request::basic_credentials(text.as_bytes());
        let _ = request::authorized(Some(text.as_bytes()), &auths);
        let _ = request::same_origin(text.as_bytes(), Some(text.as_bytes()));
        let _ = request::quote_realm(&text);
        let _ = admin::parse_form(&text);
        let _ = prometheus::Scope::from_query(Some(&text));
        let _ = data::split_csv(&text);
        // Raw bytes, not only valid UTF-8.
        let bytes: Vec<u8> = (0..(rng.next() % 16)).map(|_| rng.next() as u8).collect();
        let _ = request::basic_credentials(&bytes);
        let _ = request::same_origin(&bytes, Some(&bytes));
    }
}

#[test]
fn forms_that_parse_only_name_valid_objects() {
    let mut rng = Rng(0x00dd_ba11_5eed);
    for _ in 0..20_000 {
        let text = rng.text(ALPHABET, 24);
        if let Ok(form) = admin::parse_form(&text) {
            assert!(!form.servers.is_empty());
            for server in &form.servers {
                assert!(admin::valid_name(server), "{text:?} gave {server:?}");
                // The command built from it is one command of the CLI grammar.
                let command = form.action.command("be", server, &form.weight);
                assert!(
                    switchyard_api::command::parse(&command).is_ok(),
                    "{text:?}: {command}"
                );
            }
        }
    }
}
