//! Property-style robustness: arbitrary input must produce diagnostics, never a panic.

use switchyard_config::{parse_sources, Source};

/// Small deterministic PRNG (xorshift64*) so failures reproduce without extra dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const FIXTURES: &[&str] = &[
    include_str!("fixtures/galera.cfg"),
    include_str!("fixtures/cockroachdb.cfg"),
    include_str!("fixtures/dolphindb.cfg"),
    include_str!("fixtures/postgres.cfg"),
    include_str!("fixtures/runtime_api.cfg"),
    include_str!("fixtures/patroni.cfg"),
    include_str!("fixtures/dbcheck.cfg"),
];

/// Fragments that steer mutations towards interesting parser paths.
const TOKENS: &[&str] = &[
    " ",
    "\t",
    "\n",
    "#",
    "\"",
    "'",
    "\\",
    "$",
    "${",
    "}",
    "${X-",
    ":",
    "[",
    "]",
    "@",
    ",",
    "-",
    "(",
    ")",
    "0",
    "65536",
    "4294967296",
    "99999999999999999999",
    "ipv4@",
    "ipv6@",
    "unix@",
    "::",
    "*",
    "server",
    "bind",
    "backend",
    "frontend",
    "listen",
    "defaults",
    "global",
    "from",
    "log",
    "global",
    "option",
    "no",
    "timeout",
    "balance",
    "random(",
    "hdr(",
    "default-server",
    "weight",
    "id",
    "inter",
    "use_backend",
    "default_backend",
    "mode",
    "http",
    "stats socket",
    "level",
    "local0",
    "len",
    "format",
    "5000-5002",
    "1d",
    "us",
    "option httpchk",
    "http-check expect",
    "http-check send",
    "tcp-check",
    "expect",
    "send-binary",
    "rstring",
    "status",
    "min-recv",
    "!",
    "\\x",
    "db-check",
    "galera",
    "postgres",
    "user",
    "password",
    "role",
    "max-lag",
    "allow-donor",
];

fn parse(text: &str) {
    let _ = parse_sources(&[Source {
        name: "fuzz.cfg".into(),
        text: text.into(),
    }]);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        parse(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn random_tokens_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let n = rng.below(40);
        let text: String = (0..n).map(|_| TOKENS[rng.below(TOKENS.len())]).collect();
        parse(&text);
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let mut rng = Rng(7);
    for _ in 0..1500 {
        let mut text: Vec<char> = FIXTURES[rng.below(FIXTURES.len())].chars().collect();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(text.len() + 1);
            match rng.below(4) {
                0 if at < text.len() => {
                    text.remove(at);
                }
                1 => {
                    let tok = TOKENS[rng.below(TOKENS.len())];
                    for (k, c) in tok.chars().enumerate() {
                        text.insert(at + k, c);
                    }
                }
                2 if at < text.len() => text[at] = char::from(rng.next() as u8),
                _ => {
                    // Duplicate a line elsewhere: exercises duplicate names and ids.
                    let s: String = text.iter().collect();
                    let lines: Vec<&str> = s.lines().collect();
                    if !lines.is_empty() {
                        let line = lines[rng.below(lines.len())];
                        let mut out: Vec<&str> = lines.clone();
                        out.insert(rng.below(lines.len() + 1), line);
                        text = out.join("\n").chars().collect();
                    }
                }
            }
        }
        parse(&text.iter().collect::<String>());
    }
}

#[test]
fn pathological_lines_never_panic() {
    parse(&"\"".repeat(10_000));
    parse(&"${".repeat(1000));
    parse(&format!(
        "frontend f\n bind :1-65535,{}\n",
        ":1-65535,".repeat(3)
    ));
    parse(&format!(
        "backend b\n{}",
        " server s 1.1.1.1:1\n".repeat(2000)
    ));
    parse("backend \u{0}\n server \u{feff} \u{1F600}:1\n");
}
