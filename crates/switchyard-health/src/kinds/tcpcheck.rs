//! `option tcp-check` with its `tcp-check` rules, evaluated like HAProxy 2.6 does.
//!
//! * An implicit connect comes first when the first rule (comments aside) is not a `connect`;
//!   `connect port N` closes the current connection and connects to port N of the same address.
//! * Rules are numbered from 1 in configuration order (comments count, as in HAProxy); the
//!   implicit connect is step 0 ("at initial connection step of tcp-check").
//! * `send` writes its bytes; the received data is discarded at each `send` and `connect`, so
//!   consecutive `expect` rules look at the same data.
//! * `expect` waits for `min-recv` bytes when given (then one evaluation is conclusive),
//!   otherwise for at least the pattern's length and, on a mismatch, for more data until the
//!   connection closes, 16 KiB are buffered or the check times out — HAProxy's rule, which
//!   also means a negated expectation without `min-recv` waits for the close. `string` and
//!   `binary` are substrings; `rstring` is a regex over the bytes; `rbinary` a regex over
//!   their upper-case hex dump.
//! * Failures: "TCPCHK did not match content 'PATTERN' at step N" (or "matched unwanted
//!   content") is L7RSP; a close with nothing received is L7RSP "TCPCHK got an empty response
//!   at step N"; a timeout is L7TOUT "at step N of tcp-check (expect string 'PATTERN')"; a
//!   connect failure is L4CON/L4TOUT naming the step. All rules passed is L7OK "(tcp-check)",
//!   or L4OK when the last rule is a connect.
//! * `connect send-proxy` and `connect ssl` are not supported yet: L6RSP.

use switchyard_config::{TcpCheckRule, TcpExpect, TcpMatch};
use tokio::net::TcpStream;

use super::conn::{connect, read_some, write_all, ConnectError, IoError, BUF_SIZE};
use super::{Clock, Target};
use crate::status::{CheckOutcome, CheckStatus};

/// Runs one `tcp-check` ruleset.
pub async fn check(rules: &[TcpCheckRule], target: &Target) -> CheckOutcome {
    let clock = Clock::start(target);
    let (status, info) = run_rules(rules, target, &clock).await;
    clock.outcome(status, info)
}

/// The state of one run: the current connection and what it sent since the last send.
struct Run<'a> {
    target: &'a Target,
    clock: &'a Clock,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    eof: bool,
}

async fn run_rules(
    rules: &[TcpCheckRule],
    target: &Target,
    clock: &Clock,
) -> (CheckStatus, String) {
    let mut run = Run {
        target,
        clock,
        stream: None,
        buf: Vec::new(),
        eof: false,
    };
    let first = rules
        .iter()
        .find(|r| !matches!(r, TcpCheckRule::Comment(_)));
    if !matches!(first, Some(TcpCheckRule::Connect { .. })) {
        if let Err(failure) = run.connect(None, 0, None).await {
            return failure;
        }
    }
    let mut comment: Option<&str> = None;
    let mut last_action: Option<&TcpCheckRule> = None;
    for (index, rule) in rules.iter().enumerate() {
        let step = index + 1;
        let result = match rule {
            TcpCheckRule::Comment(text) => {
                comment = Some(text);
                continue;
            }
            TcpCheckRule::Connect {
                port,
                send_proxy,
                ssl,
            } => {
                if *send_proxy || *ssl {
                    let what = if *ssl { "ssl" } else { "send-proxy" };
                    return (
                        CheckStatus::L6Rsp,
                        format!("tcp-check connect {what} at step {step}: not supported yet"),
                    );
                }
                run.connect(*port, step, comment).await
            }
            TcpCheckRule::Send(data) => run.send(data, step, comment).await,
            TcpCheckRule::Expect(expect) => run.expect(expect, step, comment).await,
        };
        if let Err(failure) = result {
            return failure;
        }
        last_action = Some(rule);
        comment = None;
    }
    match last_action {
        Some(TcpCheckRule::Connect { .. }) => (CheckStatus::L4Ok, "(tcp-check)".into()),
        Some(_) => (CheckStatus::L7Ok, "(tcp-check)".into()),
        None => (CheckStatus::L4Ok, String::new()),
    }
}

type Failure = (CheckStatus, String);

/// " comment: 'TEXT'" when the rule has a comment.
fn with_comment(mut info: String, comment: Option<&str>) -> String {
    if let Some(text) = comment {
        info.push_str(&format!(" comment: '{text}'"));
    }
    info
}

/// "at step N of tcp-check (WHAT)" or "at initial connection step of tcp-check".
fn where_(step: usize, what: &str) -> String {
    if step == 0 {
        "at initial connection step of tcp-check".into()
    } else {
        format!("at step {step} of tcp-check ({what})")
    }
}

impl Run<'_> {
    async fn connect(
        &mut self,
        port: Option<u16>,
        step: usize,
        comment: Option<&str>,
    ) -> Result<(), Failure> {
        self.stream = None;
        self.buf.clear();
        self.eof = false;
        let mut addr = self.target.addr;
        if let Some(port) = port {
            addr.set_port(port);
        }
        let what = match port {
            Some(port) => format!("connect port {port}"),
            None => "connect".into(),
        };
        match connect(addr, self.target, self.clock).await {
            Ok(stream) => {
                self.stream = Some(stream);
                Ok(())
            }
            Err(ConnectError::Failed(text)) => Err((
                CheckStatus::L4Con,
                with_comment(format!("{text} {}", where_(step, &what)), comment),
            )),
            Err(ConnectError::Timeout) => Err((
                CheckStatus::L4Timeout,
                with_comment(
                    format!("Connection timed out {}", where_(step, &what)),
                    comment,
                ),
            )),
        }
    }

    async fn send(
        &mut self,
        data: &[u8],
        step: usize,
        comment: Option<&str>,
    ) -> Result<(), Failure> {
        self.buf.clear();
        if data.len() >= BUF_SIZE {
            return Err((
                CheckStatus::L7Rsp,
                format!("tcp-check send : string too large ({}) for buffer size ({BUF_SIZE}) at step {step}", data.len()),
            ));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err((
                CheckStatus::SockErr,
                format!("no connection {}", where_(step, "send")),
            ));
        };
        match write_all(stream, data, self.clock).await {
            Ok(()) => Ok(()),
            Err(IoError::Timeout) => Err((
                CheckStatus::L7Timeout,
                with_comment(where_(step, "send"), comment),
            )),
            Err(IoError::Failed(text)) => Err((
                CheckStatus::SockErr,
                with_comment(format!("{text} {}", where_(step, "send")), comment),
            )),
        }
    }

    async fn expect(
        &mut self,
        expect: &TcpExpect,
        step: usize,
        comment: Option<&str>,
    ) -> Result<(), Failure> {
        let matcher = match Matcher::new(&expect.matcher) {
            Ok(matcher) => matcher,
            Err(err) => {
                return Err((
                    CheckStatus::L7Rsp,
                    format!("invalid regex at step {step}: {err}"),
                ))
            }
        };
        loop {
            let last = self.eof || self.buf.len() >= BUF_SIZE;
            match evaluate(expect, &matcher, &self.buf, last) {
                Eval::Pass => return Ok(()),
                Eval::Fail { matched } => {
                    let info = fail_message(expect, matched, step);
                    return Err((CheckStatus::L7Rsp, with_comment(info, comment)));
                }
                Eval::Wait => {}
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err((
                    CheckStatus::SockErr,
                    format!("no connection {}", where_(step, "expect")),
                ));
            };
            match read_some(stream, &mut self.buf, BUF_SIZE, self.clock).await {
                Ok(0) if self.buf.is_empty() => {
                    return Err((
                        CheckStatus::L7Rsp,
                        with_comment(
                            format!("TCPCHK got an empty response at step {step}"),
                            comment,
                        ),
                    ))
                }
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(IoError::Timeout) => {
                    let info = where_(step, &describe_expect(&expect.matcher));
                    return Err((CheckStatus::L7Timeout, with_comment(info, comment)));
                }
                Err(IoError::Failed(text)) if self.buf.is_empty() => {
                    let info =
                        format!("{text} {}", where_(step, &describe_expect(&expect.matcher)));
                    return Err((CheckStatus::SockErr, with_comment(info, comment)));
                }
                // Data then a reset: judge the data, like HAProxy.
                Err(IoError::Failed(_)) => self.eof = true,
            }
        }
    }
}

/// A compiled `expect` pattern.
pub enum Matcher {
    Bytes(Vec<u8>),
    Regex(regex::bytes::Regex),
    HexRegex(regex::Regex),
}

impl Matcher {
    pub fn new(matcher: &TcpMatch) -> Result<Matcher, regex::Error> {
        Ok(match matcher {
            TcpMatch::String(text) => Matcher::Bytes(text.as_bytes().to_vec()),
            TcpMatch::Binary(bytes) => Matcher::Bytes(bytes.clone()),
            TcpMatch::RString(pattern) => Matcher::Regex(regex::bytes::Regex::new(pattern)?),
            TcpMatch::RBinary(pattern) => Matcher::HexRegex(regex::Regex::new(pattern)?),
        })
    }

    pub fn is_match(&self, data: &[u8]) -> bool {
        match self {
            Matcher::Bytes(needle) => super::http::contains(data, needle),
            Matcher::Regex(re) => re.is_match(data),
            Matcher::HexRegex(re) => re.is_match(&hex_upper(data)),
        }
    }
}

/// HAProxy's `dump_binary`: two upper-case hex digits per byte.
pub fn hex_upper(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(data.len() * 2);
    for &b in data {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// One evaluation of an `expect` rule over the data received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eval {
    Pass,
    /// The rule failed; `matched` says the pattern was found (a negated rule).
    Fail {
        matched: bool,
    },
    /// More data is needed before concluding.
    Wait,
}

/// HAProxy's `tcpcheck_eval_expect`; `last` means no more data will come (closed or full).
pub fn evaluate(expect: &TcpExpect, matcher: &Matcher, data: &[u8], last: bool) -> Eval {
    if !last {
        if let Matcher::Bytes(needle) = matcher {
            if data.len() < needle.len() {
                return Eval::Wait;
            }
        }
        if expect.min_recv.is_some_and(|n| data.len() < n) {
            return Eval::Wait;
        }
    }
    let matched = matcher.is_match(data);
    if !matched && !last && expect.min_recv.is_none() {
        return Eval::Wait;
    }
    if matched != expect.negate {
        Eval::Pass
    } else {
        Eval::Fail { matched }
    }
}

fn fail_message(expect: &TcpExpect, matched: bool, step: usize) -> String {
    let head = if matched {
        "TCPCHK matched unwanted content"
    } else {
        "TCPCHK did not match content"
    };
    match &expect.matcher {
        TcpMatch::String(text) => format!("{head} '{text}' at step {step}"),
        TcpMatch::Binary(_) => format!("{head} (binary) at step {step}"),
        TcpMatch::RString(_) => format!("{head} (regex) at step {step}"),
        TcpMatch::RBinary(_) => format!("{head} (binary regex) at step {step}"),
    }
}

fn describe_expect(matcher: &TcpMatch) -> String {
    match matcher {
        TcpMatch::String(text) => format!("expect string '{text}'"),
        TcpMatch::Binary(bytes) => format!("expect binary '{}'", hex_upper(bytes)),
        TcpMatch::RString(_) => "expect regex".into(),
        TcpMatch::RBinary(_) => "expect binary regex".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::testutil::{
        closed_port_target, fuzz_inputs, read_until, serve_once, short_target, target_for,
    };
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn expect(negate: bool, matcher: TcpMatch, min_recv: Option<usize>) -> TcpCheckRule {
        TcpCheckRule::Expect(TcpExpect {
            negate,
            matcher,
            min_recv,
        })
    }

    fn string(text: &str) -> TcpMatch {
        TcpMatch::String(text.into())
    }

    /// A Redis-like server: answers "+PONG" to "PING", "-ERR" otherwise, then keeps the
    /// connection open for `linger`.
    async fn redis_like(linger: std::time::Duration) -> std::net::SocketAddr {
        serve_once(move |mut stream| async move {
            let request = read_until(&mut stream, b"\r\n").await;
            let reply: &[u8] = if request.starts_with(b"PING") {
                b"+PONG\r\n"
            } else {
                b"-ERR unknown\r\n"
            };
            let _ = stream.write_all(reply).await;
            tokio::time::sleep(linger).await;
        })
        .await
    }

    fn ping_rules(pattern: TcpMatch, negate: bool, min_recv: Option<usize>) -> Vec<TcpCheckRule> {
        vec![
            TcpCheckRule::Send(b"PING\r\n".to_vec()),
            expect(negate, pattern, min_recv),
        ]
    }

    const LONG: std::time::Duration = std::time::Duration::from_secs(3);
    const NONE: std::time::Duration = std::time::Duration::ZERO;

    #[tokio::test]
    async fn send_expect_string_passes() {
        let addr = redis_like(LONG).await;
        let outcome = check(&ping_rules(string("+PONG"), false, None), &target_for(addr)).await;
        assert_eq!(
            (outcome.status, outcome.info.as_str()),
            (CheckStatus::L7Ok, "(tcp-check)")
        );
    }

    #[tokio::test]
    async fn mismatch_with_min_recv_is_l7rsp_at_once() {
        let addr = redis_like(LONG).await;
        let rules = vec![
            TcpCheckRule::Send(b"HELLO\r\n".to_vec()),
            expect(false, string("+PONG"), Some(4)),
        ];
        let outcome = check(&rules, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(
            outcome.info,
            "TCPCHK did not match content '+PONG' at step 2"
        );
        assert!(outcome.duration < std::time::Duration::from_secs(2));
    }

    #[tokio::test]
    async fn mismatch_without_min_recv_waits_for_close_or_timeout() {
        let addr = redis_like(NONE).await;
        let rules = vec![
            TcpCheckRule::Send(b"HELLO\r\n".to_vec()),
            expect(false, string("+PONG"), None),
        ];
        let outcome = check(&rules, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp, "closed: conclusive");
        let addr = redis_like(LONG).await;
        let outcome = check(&rules, &short_target(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Timeout);
        assert_eq!(
            outcome.info,
            "at step 2 of tcp-check (expect string '+PONG')"
        );
    }

    #[tokio::test]
    async fn negation_regex_and_binary() {
        let addr = redis_like(NONE).await;
        let outcome = check(&ping_rules(string("-ERR"), true, None), &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Ok, "{outcome:?}");
        let addr = redis_like(LONG).await;
        let outcome = check(
            &ping_rules(string("PONG"), true, Some(5)),
            &target_for(addr),
        )
        .await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(
            outcome.info,
            "TCPCHK matched unwanted content 'PONG' at step 2"
        );
        let addr = redis_like(LONG).await;
        let outcome = check(
            &ping_rules(TcpMatch::RString("^\\+P[O]NG\\r$".into()), false, Some(1)),
            &target_for(addr),
        )
        .await;
        assert_eq!(
            outcome.status,
            CheckStatus::L7Rsp,
            "no multi-line: $ is the end: {outcome:?}"
        );
        let addr = redis_like(LONG).await;
        let outcome = check(
            &ping_rules(TcpMatch::RString("(?m)^\\+PONG\\r$".into()), false, Some(1)),
            &target_for(addr),
        )
        .await;
        assert_eq!(outcome.status, CheckStatus::L7Ok, "{outcome:?}");
        let addr = redis_like(LONG).await;
        let outcome = check(
            &ping_rules(TcpMatch::Binary(b"PONG".to_vec()), false, None),
            &target_for(addr),
        )
        .await;
        assert_eq!(outcome.status, CheckStatus::L7Ok);
        // "+PONG" is 2B 50 4F 4E 47.
        let addr = redis_like(LONG).await;
        let outcome = check(
            &ping_rules(TcpMatch::RBinary("^2B504F4E47".into()), false, None),
            &target_for(addr),
        )
        .await;
        assert_eq!(outcome.status, CheckStatus::L7Ok, "{outcome:?}");
        let addr = redis_like(LONG).await;
        let outcome = check(
            &ping_rules(TcpMatch::RBinary("^2D".into()), false, Some(2)),
            &target_for(addr),
        )
        .await;
        assert_eq!(
            (outcome.status, outcome.info.as_str()),
            (
                CheckStatus::L7Rsp,
                "TCPCHK did not match content (binary regex) at step 2"
            )
        );
    }

    #[tokio::test]
    async fn empty_response_and_comment() {
        let addr = serve_once(|stream| async move { drop(stream) }).await;
        let rules = vec![
            TcpCheckRule::Comment("banner".into()),
            expect(false, string("220"), None),
        ];
        let outcome = check(&rules, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(
            outcome.info,
            "TCPCHK got an empty response at step 2 comment: 'banner'"
        );
    }

    #[tokio::test]
    async fn consecutive_expects_share_the_data() {
        let addr = serve_once(|mut stream| async move {
            let _ = stream.write_all(b"220 smtp ready\r\n").await;
            tokio::time::sleep(LONG).await;
        })
        .await;
        let rules = vec![
            expect(false, string("220"), None),
            expect(false, string("ready"), None),
        ];
        let outcome = check(&rules, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Ok, "{outcome:?}");
    }

    #[tokio::test]
    async fn connect_rules_and_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = closed_port_target().addr.port();
        let mut target = target_for(listener.local_addr().unwrap());
        let rules = vec![TcpCheckRule::Connect {
            port: None,
            send_proxy: false,
            ssl: false,
        }];
        let outcome = check(&rules, &target).await;
        assert_eq!(
            (outcome.status, outcome.info.as_str()),
            (CheckStatus::L4Ok, "(tcp-check)")
        );
        let outcome = check(&[], &target).await;
        assert_eq!(
            (outcome.status, outcome.info.as_str()),
            (CheckStatus::L4Ok, "")
        );
        let rules = vec![
            TcpCheckRule::Connect {
                port: Some(open),
                send_proxy: false,
                ssl: false,
            },
            TcpCheckRule::Connect {
                port: Some(closed),
                send_proxy: false,
                ssl: false,
            },
        ];
        let outcome = check(&rules, &target).await;
        assert_eq!(outcome.status, CheckStatus::L4Con);
        assert_eq!(
            outcome.info,
            format!("Connection refused at step 2 of tcp-check (connect port {closed})")
        );
        target.addr.set_port(closed);
        let outcome = check(&[TcpCheckRule::Send(b"x".to_vec())], &target).await;
        assert_eq!(outcome.status, CheckStatus::L4Con);
        assert_eq!(
            outcome.info,
            "Connection refused at initial connection step of tcp-check"
        );
        let rules = vec![TcpCheckRule::Connect {
            port: None,
            send_proxy: true,
            ssl: false,
        }];
        let outcome = check(&rules, &target).await;
        assert_eq!(outcome.status, CheckStatus::L6Rsp);
        assert!(outcome.info.contains("not supported yet"));
        let rules = vec![expect(false, TcpMatch::RString("(".into()), None)];
        target.addr.set_port(open);
        assert_eq!(check(&rules, &target).await.status, CheckStatus::L7Rsp);
    }

    #[tokio::test]
    async fn endless_stream_is_bounded() {
        let addr = serve_once(|mut stream| async move {
            let chunk = [b'a'; 1024];
            for _ in 0..100 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let rules = vec![expect(false, string("never"), None)];
        let outcome = check(&rules, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(
            outcome.info,
            "TCPCHK did not match content 'never' at step 1"
        );
    }

    #[test]
    fn evaluate_never_panics() {
        let matchers = [
            TcpMatch::String("+OK".into()),
            TcpMatch::Binary(vec![0, 0xff]),
            TcpMatch::RString("^[0-9]{3} ".into()),
            TcpMatch::RBinary("^52000000(08|0A)".into()),
        ];
        let seeds: [&[u8]; 2] = [b"+OK ready\r\n", &[b'R', 0, 0, 0, 8, 0, 0, 0, 0]];
        for input in fuzz_inputs(&seeds, 5_000) {
            for m in &matchers {
                let compiled = Matcher::new(m).unwrap();
                for (negate, min_recv) in [(false, None), (true, Some(3))] {
                    let e = TcpExpect {
                        negate,
                        matcher: m.clone(),
                        min_recv,
                    };
                    let _ = evaluate(&e, &compiled, &input, false);
                    let _ = evaluate(&e, &compiled, &input, true);
                }
            }
        }
        assert_eq!(hex_upper(&[0x52, 0x0a, 0xff]), "520AFF");
    }
}
