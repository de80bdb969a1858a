//! `option httpchk` with `http-check send`/`expect`, as HAProxy 2.6 does it.
//!
//! Request: `METHOD URI VERSION`, the configured headers, then what HAProxy adds itself —
//! `connection: close` unless a `Connection` header was configured, and `content-length`
//! (0 without a body) unless one was configured — then the body.
//!
//! Response: read (at most 16 KiB) until the headers are complete, and for body expectations
//! until the body is complete (`Content-Length`, chunked end, or close). No expectation means
//! HAProxy's implicit `http-check expect status 200-399`. Statuses and info follow HAProxy:
//! a status (or `rstatus`) mismatch is L7STS with the reason phrase as info ("Service
//! Unavailable"), a body mismatch is L7RSP "HTTP content check did not match" (negated:
//! "HTTP check matched unwanted content"), no body for a body check is L7RSP "HTTP content
//! check could not find a response body", anything that is not HTTP is L7RSP. The code is
//! always the HTTP status.

use switchyard_config::{HttpCheck, HttpExpect, HttpMatch};
use tokio::net::TcpStream;

use super::conn::{connect_target, read_response, write_all, IoError, BUF_SIZE};
use super::{Clock, Target};
use crate::status::{CheckOutcome, CheckStatus};

/// Runs one HTTP check.
pub async fn check(http: &HttpCheck, target: &Target) -> CheckOutcome {
    let clock = Clock::start(target);
    let mut stream = match connect_target(target, &clock).await {
        Ok(stream) => stream,
        Err(outcome) => return outcome,
    };
    let (status, code, info) = exchange(&mut stream, http, &clock).await;
    let outcome = clock.outcome(status, info);
    match code {
        Some(code) => outcome.with_code(u32::from(code)),
        None => outcome,
    }
}

async fn exchange(
    stream: &mut TcpStream,
    http: &HttpCheck,
    clock: &Clock,
) -> (CheckStatus, Option<u16>, String) {
    let request = build_request(http);
    match write_all(stream, &request, clock).await {
        Ok(()) => {}
        Err(IoError::Timeout) => {
            return (
                CheckStatus::L7Timeout,
                None,
                "timeout sending the HTTP request".into(),
            )
        }
        Err(IoError::Failed(text)) => return (CheckStatus::SockErr, None, text),
    }
    let head_request = http.method.eq_ignore_ascii_case("HEAD");
    let needs_body = matches!(
        http.expect.as_ref().map(|e| &e.matcher),
        Some(HttpMatch::String(_)) | Some(HttpMatch::RString(_))
    );
    let mut buf = Vec::with_capacity(1024);
    let mut eof = false;
    loop {
        let last = eof || buf.len() >= BUF_SIZE;
        match parse_response(&buf, head_request, last) {
            Parsed::Invalid(why) => return (CheckStatus::L7Rsp, None, why.to_string()),
            Parsed::Done(response) if !needs_body || response.complete || last => {
                let (status, info) = evaluate(&response, http.expect.as_ref());
                return (status, Some(response.status), info);
            }
            Parsed::Done(_) | Parsed::Incomplete => {}
        }
        match read_response(
            stream,
            &mut buf,
            clock,
            "timeout waiting for the HTTP response",
        )
        .await
        {
            Ok(true) => eof = true,
            Ok(false) => {}
            Err((status, info)) => return (status, None, info),
        }
    }
}

/// The request bytes HAProxy 2.6 sends for this `option httpchk`/`http-check send`.
pub fn build_request(http: &HttpCheck) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(format!("{} {} {}\r\n", http.method, http.uri, http.version).as_bytes());
    let has = |name: &str| {
        http.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    for (name, value) in &http.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !has("connection") {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let body = http.body.as_deref().unwrap_or("");
    if !has("content-length") {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// A parsed HTTP response (the final one, interim 1xx skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// The body received so far (de-chunked).
    pub body: Vec<u8>,
    /// Whether the whole body was received.
    pub complete: bool,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// Not HTTP, or cut short.
    Invalid(&'static str),
    /// The status line and headers are complete.
    Done(Response),
}

/// Parses a response from `data`; `last` says no more bytes will come (end of stream or
/// buffer full). Never panics, whatever `data` holds.
pub fn parse_response(data: &[u8], head_request: bool, last: bool) -> Parsed {
    let mut rest = data;
    loop {
        if rest.is_empty() && last {
            return Parsed::Invalid(if data.is_empty() {
                "empty response"
            } else {
                "incomplete HTTP response"
            });
        }
        let prefix = &rest[..rest.len().min(5)];
        if !b"HTTP/"[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return Parsed::Invalid("invalid HTTP response");
        }
        // Judge the status line as soon as it is complete.
        let status_line = match find_line(rest) {
            Some((line, _)) => line,
            None if last => return Parsed::Invalid("incomplete HTTP response"),
            None => return Parsed::Incomplete,
        };
        let (status, reason) = match parse_status_line(status_line) {
            Some(parsed) => parsed,
            None => return Parsed::Invalid("invalid HTTP status line"),
        };
        let Some(header_end) = find_header_end(rest) else {
            return if last || rest.len() >= BUF_SIZE {
                Parsed::Invalid("incomplete HTTP response")
            } else {
                Parsed::Incomplete
            };
        };
        let framing = match parse_headers(&rest[..header_end]) {
            Some(framing) => framing,
            None => return Parsed::Invalid("invalid HTTP header"),
        };
        let after = &rest[header_end..];
        if (100..200).contains(&status) && status != 101 {
            rest = after; // interim response: the final one follows
            continue;
        }
        let bodyless =
            head_request || status == 204 || status == 304 || (100..200).contains(&status);
        let (body, complete) = if bodyless {
            (Vec::new(), true)
        } else if framing.chunked {
            dechunk(after)
        } else if let Some(length) = framing.content_length {
            let take = after
                .len()
                .min(usize::try_from(length).unwrap_or(usize::MAX));
            (after[..take].to_vec(), (take as u64) >= length)
        } else {
            (after.to_vec(), last)
        };
        return Parsed::Done(Response {
            status,
            reason,
            body,
            complete,
        });
    }
}

/// The first line of `data` (without its CRLF/LF) and the rest, if a line end was received.
fn find_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = data.iter().position(|&b| b == b'\n')?;
    let line = &data[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, &data[end + 1..]))
}

/// Index just past the empty line ending the headers.
fn find_header_end(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(pos) = data[at..].iter().position(|&b| b == b'\n') {
        let next = at + pos + 1;
        match data.get(next) {
            Some(b'\n') => return Some(next + 1),
            Some(b'\r') if data.get(next + 1) == Some(&b'\n') => return Some(next + 2),
            _ => at = next,
        }
    }
    None
}

/// `HTTP/x.y SP 3DIGIT [SP reason]`.
fn parse_status_line(line: &[u8]) -> Option<(u16, String)> {
    let rest = line.strip_prefix(b"HTTP/").or_else(|| {
        (line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"HTTP/")).then(|| &line[5..])
    })?;
    let (version, rest) = split_at_space(rest);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let mut parts = version.splitn(2, |&b| b == b'.');
    let (major, minor) = (parts.next()?, parts.next().unwrap_or(b"0"));
    if !digits(major) || !digits(minor) {
        return None;
    }
    let rest = trim_start(rest);
    let (code, reason) = split_at_space(rest);
    if code.len() != 3 || !digits(code) {
        return None;
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return None;
    }
    let reason = String::from_utf8_lossy(trim_start(reason))
        .trim_end()
        .to_string();
    Some((status, reason))
}

fn split_at_space(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fn trim_start(data: &[u8]) -> &[u8] {
    let skip = data
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &data[skip..]
}

struct Framing {
    content_length: Option<u64>,
    chunked: bool,
}

/// The header block (status line included): body framing, or None when malformed.
fn parse_headers(block: &[u8]) -> Option<Framing> {
    let mut framing = Framing {
        content_length: None,
        chunked: false,
    };
    let mut lines = block.split(|&b| b == b'\n').skip(1);
    for line in &mut lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue; // obsolete line folding: a continuation of the previous value
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        if name.is_empty()
            || name
                .iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return None;
        }
        let value = String::from_utf8_lossy(&line[colon + 1..]);
        let value = value.trim();
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let length: u64 = value.parse().ok()?;
            if framing.content_length.is_some_and(|l| l != length) {
                return None;
            }
            framing.content_length = Some(length);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            framing.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    Some(framing)
}

/// Decodes a chunked body as far as it was received: (body, whether the last chunk came).
fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some((line, rest)) = find_line(data) else {
            return (body, false);
        };
        let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size_text = String::from_utf8_lossy(size_text);
        let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        if rest.len() < size {
            body.extend_from_slice(rest);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        let after = &rest[size..];
        data = after
            .strip_prefix(b"\r\n")
            .or_else(|| after.strip_prefix(b"\n"))
            .unwrap_or(after);
        if after.is_empty() {
            return (body, false);
        }
    }
}

/// Applies the expectation (HAProxy's implicit `status 200-399` when there is none).
pub fn evaluate(response: &Response, expect: Option<&HttpExpect>) -> (CheckStatus, String) {
    let status_failure = || {
        let info = if response.reason.is_empty() {
            format!("HTTP status check returned code <{}>", response.status)
        } else {
            response.reason.clone()
        };
        (CheckStatus::L7Sts, info)
    };
    let Some(expect) = expect else {
        return if (200..400).contains(&response.status) {
            (CheckStatus::L7Ok, response.reason.clone())
        } else {
            status_failure()
        };
    };
    let matched = match &expect.matcher {
        HttpMatch::Status(ranges) => ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&response.status)),
        HttpMatch::RStatus(pattern) => match regex::Regex::new(pattern) {
            Ok(re) => re.is_match(&response.status.to_string()),
            Err(_) => return (CheckStatus::L7Rsp, format!("invalid regex '{pattern}'")),
        },
        HttpMatch::String(_) | HttpMatch::RString(_) if response.body.is_empty() => {
            return (
                CheckStatus::L7Rsp,
                "HTTP content check could not find a response body".into(),
            )
        }
        HttpMatch::String(needle) => contains(&response.body, needle.as_bytes()),
        HttpMatch::RString(pattern) => match regex::bytes::Regex::new(pattern) {
            Ok(re) => re.is_match(&response.body),
            Err(_) => return (CheckStatus::L7Rsp, format!("invalid regex '{pattern}'")),
        },
    };
    if matched != expect.negate {
        return (CheckStatus::L7Ok, response.reason.clone());
    }
    match expect.matcher {
        HttpMatch::Status(_) | HttpMatch::RStatus(_) => status_failure(),
        HttpMatch::String(_) | HttpMatch::RString(_) => {
            let info = if expect.negate {
                "HTTP check matched unwanted content"
            } else {
                "HTTP content check did not match"
            };
            (CheckStatus::L7Rsp, info.into())
        }
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::testutil::{
        closed_port_target, fuzz_inputs, read_until, serve_once, serve_silence, short_target,
        target_for,
    };
    use tokio::io::AsyncWriteExt;

    fn expect(negate: bool, matcher: HttpMatch) -> Option<HttpExpect> {
        Some(HttpExpect { negate, matcher })
    }

    /// Serves `reply` after reading the request's headers; hands the request back.
    async fn server(
        reply: &'static [u8],
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Receiver<Vec<u8>>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = serve_once(move |mut stream| async move {
            let request = read_until(&mut stream, b"\r\n\r\n").await;
            let _ = tx.send(request);
            let _ = stream.write_all(reply).await;
            let _ = stream.shutdown().await;
        })
        .await;
        (addr, rx)
    }

    async fn run_with(http: &HttpCheck, reply: &'static [u8]) -> CheckOutcome {
        let (addr, _rx) = server(reply).await;
        check(http, &target_for(addr)).await
    }

    #[test]
    fn request_bytes_like_haproxy() {
        let http = HttpCheck::default();
        assert_eq!(
            build_request(&http),
            b"OPTIONS / HTTP/1.0\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        );
        let http = HttpCheck {
            method: "POST".into(),
            uri: "/health".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), "db1".into()),
                ("Connection".into(), "keep-alive".into()),
            ],
            body: Some("ping".into()),
            expect: None,
        };
        assert_eq!(
            String::from_utf8(build_request(&http)).unwrap(),
            "POST /health HTTP/1.1\r\nHost: db1\r\nConnection: keep-alive\r\ncontent-length: 4\r\n\r\nping"
        );
    }

    #[tokio::test]
    async fn default_expectation_2xx_3xx_ok() {
        let (addr, rx) = server(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let outcome = check(&HttpCheck::default(), &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Ok);
        assert_eq!(outcome.code, Some(200));
        assert_eq!(outcome.info, "OK");
        let request = rx.await.unwrap();
        assert!(request.starts_with(b"OPTIONS / HTTP/1.0\r\n"));
        let outcome = run_with(&HttpCheck::default(), b"HTTP/1.1 302 Found\r\n\r\n").await;
        assert_eq!(
            (outcome.status, outcome.code),
            (CheckStatus::L7Ok, Some(302))
        );
    }

    #[tokio::test]
    async fn default_expectation_5xx_is_l7sts_with_reason() {
        let outcome = run_with(
            &HttpCheck::default(),
            b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
        )
        .await;
        assert_eq!(outcome.status, CheckStatus::L7Sts);
        assert_eq!(outcome.code, Some(503));
        assert_eq!(outcome.info, "Service Unavailable");
        let outcome = run_with(&HttpCheck::default(), b"HTTP/1.1 404\r\n\r\n").await;
        assert_eq!(outcome.status, CheckStatus::L7Sts);
        assert_eq!(outcome.info, "HTTP status check returned code <404>");
    }

    #[tokio::test]
    async fn expect_status_ranges_and_negation() {
        let http = HttpCheck {
            expect: expect(false, HttpMatch::Status(vec![(200, 200), (404, 404)])),
            ..Default::default()
        };
        assert_eq!(
            run_with(&http, b"HTTP/1.1 404 Not Found\r\n\r\n")
                .await
                .status,
            CheckStatus::L7Ok
        );
        assert_eq!(
            run_with(&http, b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .status,
            CheckStatus::L7Sts
        );
        let http = HttpCheck {
            expect: expect(true, HttpMatch::Status(vec![(500, 599)])),
            ..Default::default()
        };
        assert_eq!(
            run_with(&http, b"HTTP/1.1 404 Not Found\r\n\r\n")
                .await
                .status,
            CheckStatus::L7Ok
        );
        assert_eq!(
            run_with(&http, b"HTTP/1.1 500 Oops\r\n\r\n").await.status,
            CheckStatus::L7Sts
        );
    }

    #[tokio::test]
    async fn expect_rstatus() {
        let http = HttpCheck {
            expect: expect(false, HttpMatch::RStatus("^2".into())),
            ..Default::default()
        };
        assert_eq!(
            run_with(&http, b"HTTP/1.1 201 Created\r\n\r\n")
                .await
                .status,
            CheckStatus::L7Ok
        );
        let outcome = run_with(&http, b"HTTP/1.1 301 Moved\r\n\r\n").await;
        assert_eq!(
            (outcome.status, outcome.code, outcome.info.as_str()),
            (CheckStatus::L7Sts, Some(301), "Moved")
        );
        let http = HttpCheck {
            expect: expect(false, HttpMatch::RStatus("(".into())),
            ..Default::default()
        };
        assert_eq!(
            run_with(&http, b"HTTP/1.1 200 OK\r\n\r\n").await.status,
            CheckStatus::L7Rsp
        );
    }

    #[tokio::test]
    async fn expect_string_in_body() {
        let http = HttpCheck {
            expect: expect(false, HttpMatch::String("primary".into())),
            ..Default::default()
        };
        let outcome = run_with(
            &http,
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nrole=primary",
        )
        .await;
        assert_eq!(outcome.status, CheckStatus::L7Ok);
        let outcome = run_with(
            &http,
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nrole=standby",
        )
        .await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(outcome.info, "HTTP content check did not match");
        assert_eq!(outcome.code, Some(200));
        // Until close, chunked.
        let outcome = run_with(&http, b"HTTP/1.0 200 OK\r\n\r\nrole=primary").await;
        assert_eq!(outcome.status, CheckStatus::L7Ok);
        let outcome =
            run_with(&http, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nrole=\r\n7\r\nprimary\r\n0\r\n\r\n").await;
        assert_eq!(outcome.status, CheckStatus::L7Ok);
        let outcome = run_with(&http, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(
            outcome.info,
            "HTTP content check could not find a response body"
        );
    }

    #[tokio::test]
    async fn expect_negated_string_and_rstring() {
        let http = HttpCheck {
            expect: expect(true, HttpMatch::String("maintenance".into())),
            ..Default::default()
        };
        let outcome = run_with(
            &http,
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nmaintenance",
        )
        .await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(outcome.info, "HTTP check matched unwanted content");
        let outcome = run_with(&http, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        assert_eq!(outcome.status, CheckStatus::L7Ok);
        let http = HttpCheck {
            expect: expect(false, HttpMatch::RString("lag=[0-9]\\b".into())),
            ..Default::default()
        };
        assert_eq!(
            run_with(&http, b"HTTP/1.1 200 OK\r\n\r\nlag=3 ok")
                .await
                .status,
            CheckStatus::L7Ok
        );
        assert_eq!(
            run_with(&http, b"HTTP/1.1 200 OK\r\n\r\nlag=31 ok")
                .await
                .status,
            CheckStatus::L7Rsp
        );
    }

    #[tokio::test]
    async fn garbage_empty_and_truncated_are_l7rsp() {
        let outcome = run_with(&HttpCheck::default(), b"SSH-2.0-OpenSSH_9.6\r\n").await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(outcome.code, None);
        let outcome = run_with(&HttpCheck::default(), b"").await;
        assert_eq!(
            (outcome.status, outcome.info.as_str()),
            (CheckStatus::L7Rsp, "empty response")
        );
        let outcome = run_with(&HttpCheck::default(), b"HTTP/1.1 200 OK\r\nServer: x").await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        let outcome = run_with(&HttpCheck::default(), b"HTTP/1.1 2000 OK\r\n\r\n").await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
    }

    #[tokio::test]
    async fn interim_100_is_skipped() {
        let outcome = run_with(
            &HttpCheck::default(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Internal\r\n\r\n",
        )
        .await;
        assert_eq!(
            (outcome.status, outcome.code),
            (CheckStatus::L7Sts, Some(500))
        );
    }

    #[tokio::test]
    async fn silence_is_l7tout_and_refused_is_l4con() {
        let addr = serve_silence().await;
        let outcome = check(&HttpCheck::default(), &short_target(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Timeout, "{outcome:?}");
        let outcome = check(&HttpCheck::default(), &closed_port_target()).await;
        assert_eq!(outcome.status, CheckStatus::L4Con);
    }

    #[tokio::test]
    async fn endless_headers_are_bounded() {
        let addr = serve_once(|mut stream| async move {
            let _ = read_until(&mut stream, b"\r\n\r\n").await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            for _ in 0..2000 {
                if stream.write_all(line).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let outcome = check(&HttpCheck::default(), &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(outcome.info, "incomplete HTTP response");
    }

    #[test]
    fn parser_never_panics() {
        let seeds: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.0 100 Continue\r\n\r\nHTTP/1.0 503 Busy\n\n",
            b"HTTP/1.1 404 Not Found\r\nX: y\r\n folded\r\n\r\n",
        ];
        for input in fuzz_inputs(&seeds, 20_000) {
            for (head, last) in [(false, false), (false, true), (true, true)] {
                if let Parsed::Done(response) = parse_response(&input, head, last) {
                    let _ = evaluate(&response, None);
                    let _ = evaluate(
                        &response,
                        expect(true, HttpMatch::String("x".into())).as_ref(),
                    );
                }
            }
        }
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK"),
            Some((200, "OK".into()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503"),
            Some((503, String::new()))
        );
        assert_eq!(
            parse_status_line(b"http/1.1 404 Not  Found "),
            Some((404, "Not  Found".into()))
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/x 200 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 099 Low"), None);
    }
}
