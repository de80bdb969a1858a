//! Robustness of everything that reads operator input on the stats socket: the request framer
//! ([`next_command`]), the splitter and tokenizer, and the command parser. Thousands of
//! deterministic pseudo-random and mutated inputs must each end in a command or in an error
//! message, never in a panic, and keep the invariants the server relies on (framing is
//! lossless, errors of a command are reported at that command's level so a lower session only
//! ever sees "Permission denied"). Edge cases observed on HAProxy 2.6.12 are pinned at the end.
//!
//! The same checks run unbounded in `fuzz/fuzz_targets/cli_command.rs`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use switchyard_api::command::{
    parse, split_commands, tokenize, Command, Level, ParseError, MAX_LINE, PERMISSION_DENIED,
};
use switchyard_api::server::{next_command, Frame, MAX_COMMAND};

/// Marsaglia's xorshift64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Valid commands of every family the parser models, with how many leading words are the
/// command's keywords (the rest are its arguments).
const SEEDS: &[(&str, usize)] = &[
    ("help", 1),
    ("help show", 1),
    ("prompt", 1),
    ("quit", 1),
    ("operator", 1),
    ("user", 1),
    ("set timeout cli 30", 3),
    ("show info", 2),
    ("show info typed desc float", 2),
    ("show stat", 2),
    ("show stat json up no-maint", 2),
    ("show stat -1 7 -1 typed", 2),
    ("show stat domain proxy be 4 -1", 2),
    ("show servers state", 3),
    ("show servers state be", 3),
    ("show servers conn be", 3),
    ("show backend", 2),
    ("show version", 2),
    ("show sess", 2),
    ("show sess all", 2),
    ("show sess 0x5592232781b0", 2),
    ("reload", 1),
    ("add server be/s9 10.0.0.1:5432", 2),
    (
        "add server be/s9 10.0.0.1:5432 weight 5 check backup maxconn 10 disabled inter 2s",
        2,
    ),
    ("del server be/s1", 2),
    ("set server be/s1 state ready", 2),
    ("set server be/s1 state drain", 2),
    ("set server be/s1 state maint", 2),
    ("set server be/s1 weight 50%", 2),
    ("set server be/s1 weight 7", 2),
    ("set server be/s1 addr 10.0.0.2 port 5433", 2),
    ("set server be/s1 health stopping", 2),
    ("set server be/s1 agent up", 2),
    ("set server be/s1 check-port 8080", 2),
    ("set server be/s1 fqdn db.example", 2),
    ("enable server be/s1", 2),
    ("disable server be/s1", 2),
    ("enable health be/s1", 2),
    ("disable health be/s1", 2),
    ("enable agent be/s1", 2),
    ("disable agent be/s1", 2),
    ("get weight be/s1", 2),
    ("set weight be/s1 10", 2),
    ("set weight be/s1 150%", 2),
    ("set maxconn server be/s1 100", 3),
    ("set maxconn frontend fe 100", 3),
    ("set maxconn global 1000", 3),
    ("shutdown sessions server be/s1", 3),
    ("shutdown session 0x5592232781b0", 2),
    ("clear counters", 2),
    ("clear counters all", 2),
    ("show env", 2),
    ("set map /etc/m key value", 2),
];

/// Words and bytes that hit the parser's corners: escapes, separators, signs, radixes,
/// percent signs, NUL, CR, invalid UTF-8 (after lossy decoding), very long words.
const JUNK: &[&str] = &[
    "",
    "\\",
    "\\\\",
    "\\;",
    "\\ ",
    ";",
    ";;",
    "\r",
    "\t",
    "\0",
    "a\0b",
    "/",
    "be/",
    "/s1",
    "be/s1/x",
    "%",
    "-1",
    "-0",
    "+5",
    "0x",
    "0x10",
    "010",
    "99999999999999999999999",
    "-99999999999999999999999%",
    "256",
    "257",
    "100%",
    "-1%",
    "1e3",
    "\u{fffd}",
    "\u{fffd}\u{fffd}",
    "é",
    "weight",
    "state",
    "server",
    "all",
    "ready",
    "maint",
    "addr",
    "port",
    "check-port",
    "domain",
    "typed",
    "json",
];

/// Everything the parser may answer for one command must be a complete answer: a command, or
/// an error message that is not blank.
fn check_parse(input: &str) -> Result<Command, ParseError> {
    let first = parse(input);
    // (Checked on a sample: an unknown command's suggestions are slow to build unoptimised.)
    if input.len().is_multiple_of(8) {
        assert_eq!(first, parse(input), "parse is not deterministic: {input:?}");
    }
    match &first {
        Ok(cmd) => {
            let _ = cmd.level();
            if let Command::Help(words) = cmd {
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                let text = switchyard_api::command::help_message(&words);
                assert!(text.ends_with("  quit                                    : disconnect\n"));
            }
        }
        Err(e) => {
            assert!(
                !e.message.trim().is_empty(),
                "blank error message for {input:?}"
            );
            assert_ne!(e.message, PERMISSION_DENIED, "{input:?}");
            assert_eq!(e.to_string(), e.message.trim_end(), "{input:?}");
            if e.message.starts_with("Unknown command") {
                assert_eq!(e.level, Level::User, "{input:?}");
                assert!(
                    e.message
                        .ends_with("  quit                                    : disconnect\n"),
                    "truncated usage for {input:?}: {:?}",
                    e.message
                );
            }
        }
    }
    first
}

/// Frames a whole request the way the socket server does and checks that the framing is
/// lossless: every command plus its delimiter (and dropped `\r`) rebuilds the request.
fn check_framing(request: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = request;
    let mut commands = Vec::new();
    loop {
        match next_command(rest) {
            Frame::Command { text, consumed } => {
                assert!(consumed > 0 && consumed <= rest.len());
                assert!(consumed <= MAX_COMMAND, "command longer than the limit");
                let delimiter = rest[consumed - 1];
                assert!(delimiter == b'\n' || delimiter == b';');
                let between = &rest[text.len()..consumed - 1];
                assert!(
                    between.is_empty() || between == b"\r",
                    "only one CR may be dropped: {between:?}"
                );
                assert_eq!(text, &rest[..text.len()]);
                commands.push(text.to_vec());
                rest = &rest[consumed..];
            }
            Frame::Incomplete => {
                assert!(rest.len() < MAX_COMMAND);
                break;
            }
            Frame::TooLong => {
                assert!(rest.len() >= MAX_COMMAND);
                break;
            }
        }
    }
    commands
}

/// One command, with its words possibly mutated.
fn mutate(rng: &mut Rng, seed: &str, keywords: usize) -> String {
    let mut words: Vec<String> = seed.split(' ').map(str::to_string).collect();
    match rng.below(8) {
        // Replace an argument by junk.
        0 | 1 if words.len() > keywords => {
            let i = keywords + rng.below(words.len() - keywords);
            words[i] = rng.pick(JUNK).to_string();
        }
        // Drop arguments from the end.
        2 if words.len() > keywords => {
            let keep = keywords + rng.below(words.len() - keywords);
            words.truncate(keep);
        }
        // Append junk arguments.
        3 => {
            for _ in 0..=rng.below(3) {
                words.push(rng.pick(JUNK).to_string());
            }
        }
        // Glue junk inside an argument.
        4 if words.len() > keywords => {
            let i = keywords + rng.below(words.len() - keywords);
            let at = rng.below(words[i].len() + 1);
            if words[i].is_char_boundary(at) {
                let junk = *rng.pick(JUNK);
                words[i].insert_str(at, junk);
            }
        }
        // A huge argument.
        5 if words.len() > keywords => {
            let i = keywords + rng.below(words.len() - keywords);
            words[i] = "x".repeat(1 + rng.below(MAX_LINE * 2));
        }
        _ => {}
    }
    let sep = [" ", "  ", "\t", " \t "][rng.below(4)];
    words.join(sep)
}

/// Random bytes biased towards the CLI's special characters, decoded like the server does.
fn noise(rng: &mut Rng) -> Vec<u8> {
    const SPECIAL: &[u8] = b" \t\r\n;\\/%\0-";
    (0..rng.below(80))
        .map(|_| {
            if rng.below(3) == 0 {
                *rng.pick(SPECIAL)
            } else {
                rng.next() as u8
            }
        })
        .collect()
}

#[test]
fn thousands_of_random_and_mutated_requests_frame_and_parse_without_panicking() {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut parsed = 0usize;
    let mut errors = 0usize;
    for round in 0..4000 {
        // Mostly mutated valid commands chained with `;` and lines, some raw noise.
        let mut request: Vec<u8> = Vec::new();
        if round % 8 != 0 {
            for _ in 0..=rng.below(4) {
                let (seed, keywords) = *rng.pick(SEEDS);
                request.extend_from_slice(mutate(&mut rng, seed, keywords).as_bytes());
                request.extend_from_slice([&b";"[..], b"\n", b"\r\n", b" ; "][rng.below(4)]);
            }
        } else {
            request = noise(&mut rng);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut counts = (0, 0);
            for command in check_framing(&request) {
                match check_parse(&String::from_utf8_lossy(&command)) {
                    Ok(_) => counts.0 += 1,
                    Err(_) => counts.1 += 1,
                }
            }
            counts
        }));
        match outcome {
            Ok((ok, err)) => {
                parsed += ok;
                errors += err;
            }
            Err(_) => panic!(
                "round {round}: the request {:?} made the framer or the parser panic",
                String::from_utf8_lossy(&request)
            ),
        }
    }
    // The generator must exercise both outcomes broadly, or this test proves nothing.
    assert!(parsed > 3000, "only {parsed} commands parsed");
    assert!(errors > 2000, "only {errors} commands refused");
}

#[test]
fn argument_errors_are_reported_at_the_level_of_their_command() {
    // The server prints "Permission denied" when an error's level is above the session's, so
    // an error from an admin command's arguments must carry the admin level: otherwise a user
    // session would learn about (and probe) commands it may not run. HAProxy checks the
    // level before the arguments.
    let mut rng = Rng(0x0001_e7e1_0fac_ce55);
    let mut refused = 0;
    for _ in 0..3000 {
        let (seed, keywords) = *rng.pick(SEEDS);
        if seed == "reload" {
            // Takes no argument: `reload x` is an unknown command, at every level.
            continue;
        }
        let level = parse(seed)
            .unwrap_or_else(|e| panic!("seed {seed:?} must parse: {e}"))
            .level();
        let input = mutate(&mut rng, seed, keywords);
        if let Err(e) = check_parse(&input) {
            refused += 1;
            assert_eq!(
                e.level, level,
                "{input:?} (from {seed:?}) fails at level {} instead of {level}: {:?}",
                e.level, e.message
            );
        }
    }
    assert!(refused > 300, "only {refused} mutations were refused");
}

#[test]
fn every_prefix_of_a_valid_command_is_refused_at_its_level_or_parses() {
    for (seed, keywords) in SEEDS {
        let level = parse(seed).unwrap().level();
        let words: Vec<&str> = seed.split(' ').collect();
        for n in *keywords..=words.len() {
            let prefix = words[..n].join(" ");
            if let Err(e) = check_parse(&prefix) {
                assert_eq!(e.level, level, "{prefix:?}: {:?}", e.message);
            }
        }
    }
}

#[test]
fn framing_agrees_with_split_commands_on_every_single_line() {
    let mut rng = Rng(0x0d1f_fe4e_71a1);
    for _ in 0..3000 {
        let mut line: Vec<u8> = noise(&mut rng);
        line.retain(|&b| b != b'\n');
        // An odd number of trailing backslashes would escape the LF added below.
        while line.ends_with(b"\\") {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let mut request = text.clone().into_bytes();
        request.push(b'\n');
        let framed: Vec<String> = check_framing(&request)
            .iter()
            .map(|c| String::from_utf8(c.clone()).unwrap())
            .collect();
        assert_eq!(framed, split_commands(&text), "{text:?}");
    }
}

#[test]
fn escaping_every_word_round_trips_through_the_tokenizer() {
    let mut rng = Rng(0x0007_013e_412e);
    for _ in 0..3000 {
        let words: Vec<String> = (0..rng.below(6))
            .map(|_| {
                let bytes: Vec<u8> = noise(&mut rng)
                    .into_iter()
                    .filter(|&b| b != 0 && b != b'\n')
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .filter(|w| !w.is_empty())
            .collect();
        let escaped: Vec<String> = words
            .iter()
            .map(|w| {
                let mut out = String::new();
                for c in w.chars() {
                    if matches!(c, ' ' | '\t' | '\\' | ';') {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out
            })
            .collect();
        let line = escaped.join(" ");
        assert_eq!(tokenize(&line), words, "{line:?}");
        // And through the framer: an escaped `;` or CR does not end or trim the command.
        let mut request = line.clone().into_bytes();
        request.push(b'\n');
        let framed = check_framing(&request);
        if !line.ends_with('\r') {
            assert_eq!(framed, vec![line.clone().into_bytes()], "{line:?}");
        }
    }
}

#[test]
fn commands_are_limited_one_by_one_not_per_line() {
    // Observed on HAProxy 2.6: a command of 16382 bytes plus its `;` is answered, one more
    // byte closes the connection; a 17000-byte chain of short commands is fully answered.
    let long = |n: usize| {
        let mut c = b"get weight be/s1 ".to_vec();
        c.resize(n, b'x');
        c
    };
    let mut ok = long(MAX_COMMAND - 1);
    ok.extend_from_slice(b";get weight be/s1\n");
    assert_eq!(check_framing(&ok).len(), 2);
    let mut too_long = long(MAX_COMMAND);
    too_long.extend_from_slice(b";get weight be/s1\n");
    assert_eq!(next_command(&too_long), Frame::TooLong);
    let chain = vec!["get weight be/s1"; 1000].join(";") + "\n";
    assert!(chain.len() > MAX_LINE);
    let commands = check_framing(chain.as_bytes());
    assert_eq!(commands.len(), 1000);
    assert!(commands.iter().all(|c| c == b"get weight be/s1"));
    // No delimiter yet: wait, unless the buffer is full.
    assert_eq!(next_command(b"get weight be/s1"), Frame::Incomplete);
    assert_eq!(next_command(b"get weight be/s1\\"), Frame::Incomplete);
    assert_eq!(next_command(&long(MAX_COMMAND)), Frame::TooLong);
}

#[test]
fn framing_and_tokenizing_match_haproxy_on_control_bytes() {
    // Each case was sent to HAProxy 2.6.12's stats socket; the comment says what it answered.
    let words = |request: &[u8]| -> Vec<Vec<String>> {
        check_framing(request)
            .iter()
            .map(|c| tokenize(&String::from_utf8_lossy(c)))
            .collect()
    };
    let w = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // "1 (initial 1)" twice: CR is dropped before `;` as before LF.
    assert_eq!(
        words(b"get weight be/s1\r;get weight be/s1\r\n"),
        vec![w(&["get", "weight", "be/s1"]); 2]
    );
    // "No such server.": only one CR is dropped, the other stays in the word.
    assert_eq!(
        words(b"get weight be/s1\r\r\n"),
        vec![w(&["get", "weight", "be/s1\r"])]
    );
    // "Unknown command, but maybe ... get weight": a CR inside does not separate words.
    assert_eq!(
        words(b"get weight\rbe/s1\n"),
        vec![w(&["get", "weight\rbe/s1"])]
    );
    // "1 (initial 1)": tabs separate words.
    assert_eq!(
        words(b"get\t\tweight \t be/s1\t\n"),
        vec![w(&["get", "weight", "be/s1"])]
    );
    // "1 (initial 1)": a NUL ends its word, the next word starts after it.
    assert_eq!(
        words(b"get weight be/s1\0junk\n"),
        vec![w(&["get", "weight", "be/s1", "junk"])]
    );
    // "Require 'backend/server'.": a NUL where a word starts ends the command.
    assert_eq!(words(b"get weight \0be/s1\n"), vec![w(&["get", "weight"])]);
    // "Unknown command. Please enter one of the following commands only:" (no words at all).
    assert_eq!(words(b"\0\x01\x02\xff\xfe\n"), vec![w(&[])]);
    // "No such server.": an escaped LF belongs to the word and does not end the command.
    assert_eq!(
        words(b"get weight be/s\\\n1\n"),
        vec![w(&["get", "weight", "be/s\n1"])]
    );
    // "No such server." then nothing: `\;` is a literal semicolon.
    assert_eq!(
        words(b"get weight be/s1\\;x\n"),
        vec![w(&["get", "weight", "be/s1;x"])]
    );
}

#[test]
fn empty_backend_or_server_names_require_backend_slash_server_like_haproxy() {
    // HAProxy 2.6.12: `be/`, `/s1` and `/` are refused before any lookup.
    for (template, message) in [
        ("set weight {} 5", "Require 'backend/server'.\n"),
        ("set server {} state ready", "Require 'backend/server'.\n"),
        ("set server {} weight 5", "Require 'backend/server'.\n"),
        ("enable server {}", "Require 'backend/server'.\n"),
        ("disable server {}", "Require 'backend/server'.\n"),
        ("enable health {}", "Require 'backend/server'.\n"),
        ("disable agent {}", "Require 'backend/server'.\n"),
        ("set maxconn server {} 5", "Require 'backend/server'.\n"),
        ("shutdown sessions server {}", "Require 'backend/server'.\n"),
        ("del server {}", "Require 'backend/server'."),
        ("add server {} 127.0.0.1:1", "Require 'backend/server'."),
    ] {
        for name in ["be/", "/s1", "/", "be"] {
            let input = template.replace("{}", name);
            let e = parse(&input).expect_err(&input);
            assert_eq!(
                (e.level, e.message.as_str()),
                (Level::Admin, message),
                "{input}"
            );
        }
    }
    // `get weight` only requires the server part; `/s1` is "No such backend." at lookup.
    for name in ["be/", "/", "be"] {
        let e = parse(&format!("get weight {name}")).unwrap_err();
        assert_eq!(e.message, "Require 'backend/server'.\n", "{name}");
        assert_eq!(e.level, Level::User);
    }
    assert!(matches!(parse("get weight /s1"), Ok(Command::GetWeight(s)) if s.backend.is_empty()));
}
