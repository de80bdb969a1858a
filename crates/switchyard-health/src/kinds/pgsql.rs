//! `option pgsql-check user NAME`, with HAProxy 2.6's bytes.
//!
//! Sent right after connecting: a StartupMessage for protocol 3.0 with only the `user`
//! parameter (no `database`: the server then uses the user name, as for HAProxy):
//! length (4 bytes, big-endian, `15 + len(user)`), `00 03 00 00`, `user` NUL, NAME NUL, NUL.
//!
//! The first message back decides: an authentication request (`R`, AuthenticationOk or any
//! request for credentials) means the server is alive and accepting connections: L7OK
//! "PostgreSQL server is ok". An ErrorResponse (`E`: "the database system is starting up",
//! "role ... does not exist", "too many clients") is L7STS with the message text as info.
//! Anything else is L7RSP. (HAProxy itself reports an `E` as L7RSP with the severity as info.)

use tokio::net::TcpStream;

use super::conn::{connect_target, read_response, write_all, IoError, BUF_SIZE};
use super::{Clock, Target};
use crate::status::{CheckOutcome, CheckStatus};

/// Runs one PostgreSQL check.
pub async fn check(user: &str, target: &Target) -> CheckOutcome {
    let clock = Clock::start(target);
    let mut stream = match connect_target(target, &clock).await {
        Ok(stream) => stream,
        Err(outcome) => return outcome,
    };
    let (status, info) = exchange(&mut stream, user, &clock).await;
    clock.outcome(status, info)
}

async fn exchange(stream: &mut TcpStream, user: &str, clock: &Clock) -> (CheckStatus, String) {
    match write_all(stream, &startup_message(user), clock).await {
        Ok(()) => {}
        Err(IoError::Timeout) => {
            return (
                CheckStatus::L7Timeout,
                "timeout sending the startup message".into(),
            )
        }
        Err(IoError::Failed(text)) => return (CheckStatus::SockErr, text),
    }
    let mut buf = Vec::with_capacity(256);
    let mut eof = false;
    loop {
        let last = eof || buf.len() >= BUF_SIZE;
        match parse_first_message(&buf, last) {
            First::Incomplete => {}
            First::Auth(_) => return (CheckStatus::L7Ok, "PostgreSQL server is ok".into()),
            First::Error(message) => return (CheckStatus::L7Sts, message),
            First::Invalid(why) => return (CheckStatus::L7Rsp, why.into()),
        }
        match read_response(
            stream,
            &mut buf,
            clock,
            "timeout waiting for the PostgreSQL server",
        )
        .await
        {
            Ok(true) => eof = true,
            Ok(false) => {}
            Err(failure) => return failure,
        }
    }
}

/// The StartupMessage HAProxy sends: protocol 3.0, `user` only.
pub fn startup_message(user: &str) -> Vec<u8> {
    let len = 15 + user.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&[0x00, 0x03, 0x00, 0x00]);
    out.extend_from_slice(b"user\0");
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(b"\0\0");
    out
}

/// The server's first message as far as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum First {
    /// More bytes are needed.
    Incomplete,
    /// An authentication request, with its code (0 = AuthenticationOk, 3 = cleartext, 5 = MD5,
    /// 10 = SASL...).
    Auth(u32),
    /// An ErrorResponse: its message (`M` field), or the whole text when there is none.
    Error(String),
    /// Not a PostgreSQL answer.
    Invalid(&'static str),
}

/// Parses the first message of `data`; `last` says no more bytes will come.
pub fn parse_first_message(data: &[u8], last: bool) -> First {
    let Some(&kind) = data.first() else {
        return if last {
            First::Invalid("empty response")
        } else {
            First::Incomplete
        };
    };
    if kind != b'R' && kind != b'E' {
        return First::Invalid("invalid PostgreSQL response");
    }
    let Some(len_bytes) = data.get(1..5) else {
        return if last {
            First::Invalid("truncated PostgreSQL response")
        } else {
            First::Incomplete
        };
    };
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    // An authentication request is 8 bytes or more (SASL lists mechanisms); an error message
    // is bounded by our buffer.
    if !(8..=BUF_SIZE).contains(&len) {
        return First::Invalid("invalid PostgreSQL message length");
    }
    let complete = data.len() > len;
    match kind {
        b'R' => match data.get(5..9) {
            Some(code) => First::Auth(u32::from_be_bytes([code[0], code[1], code[2], code[3]])),
            None if last => First::Invalid("truncated PostgreSQL response"),
            None => First::Incomplete,
        },
        _ if !complete && !last => First::Incomplete,
        _ => First::Error(error_message(&data[5..data.len().min(len + 1)])),
    }
}

/// The `M` (message) field of an ErrorResponse body, or all fields joined when it lacks one.
fn error_message(body: &[u8]) -> String {
    let mut all = Vec::new();
    for field in body.split(|&b| b == 0) {
        let Some((&code, value)) = field.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value);
        let value: String = value.chars().filter(|c| !c.is_control()).collect();
        if code == b'M' {
            return value;
        }
        all.push(value);
    }
    if all.is_empty() {
        "PostgreSQL error".into()
    } else {
        all.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::testutil::{
        closed_port_target, fuzz_inputs, serve_exchange, serve_silence, short_target, target_for,
    };

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn error_response(severity: &str, code: &str, text: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (field, value) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', text),
        ] {
            body.push(field);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        message(b'E', &body)
    }

    /// A fake server: reads the startup message (handing it back), replies, closes.
    async fn server(
        user: &str,
        reply: Vec<u8>,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Receiver<Vec<u8>>,
    ) {
        serve_exchange(Vec::new(), startup_message(user).len(), reply).await
    }

    #[test]
    fn startup_bytes_like_haproxy() {
        let mut want = vec![0, 0, 0, 22, 0, 3, 0, 0];
        want.extend_from_slice(b"user\0haproxy\0\0");
        assert_eq!(startup_message("haproxy"), want);
    }

    #[tokio::test]
    async fn auth_ok_and_auth_requests_are_l7ok() {
        for code in [0u32, 3, 5, 10] {
            let mut body = code.to_be_bytes().to_vec();
            if code == 10 {
                body.extend_from_slice(b"SCRAM-SHA-256\0\0");
            }
            let (addr, rx) = server("check", message(b'R', &body)).await;
            let outcome = check("check", &target_for(addr)).await;
            assert_eq!(outcome.status, CheckStatus::L7Ok, "auth code {code}");
            assert_eq!(outcome.info, "PostgreSQL server is ok");
            assert_eq!(rx.await.unwrap(), startup_message("check"));
        }
    }

    #[tokio::test]
    async fn error_response_is_l7sts_with_message() {
        let reply = error_response("FATAL", "57P03", "the database system is starting up");
        let (addr, _rx) = server("check", reply).await;
        let outcome = check("check", &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Sts);
        assert_eq!(outcome.info, "the database system is starting up");
    }

    #[tokio::test]
    async fn other_answers_are_l7rsp() {
        // A server speaking an older protocol answers with a bare error text.
        let (addr, _rx) = server("check", b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()).await;
        assert_eq!(
            check("check", &target_for(addr)).await.status,
            CheckStatus::L7Rsp
        );
        let (addr, _rx) = server("check", Vec::new()).await;
        let outcome = check("check", &target_for(addr)).await;
        assert_eq!(
            (outcome.status, outcome.info.as_str()),
            (CheckStatus::L7Rsp, "empty response")
        );
        let (addr, _rx) = server("check", vec![b'R', 0, 0]).await;
        assert_eq!(
            check("check", &target_for(addr)).await.status,
            CheckStatus::L7Rsp
        );
    }

    #[tokio::test]
    async fn silence_is_l7tout_and_refused_is_l4con() {
        let addr = serve_silence().await;
        assert_eq!(
            check("check", &short_target(addr)).await.status,
            CheckStatus::L7Timeout
        );
        assert_eq!(
            check("check", &closed_port_target()).await.status,
            CheckStatus::L4Con
        );
    }

    #[test]
    fn parser_never_panics() {
        let ok = message(b'R', &[0, 0, 0, 0]);
        let err = error_response("FATAL", "28000", "role \"x\" does not exist");
        let seeds: [&[u8]; 2] = [&ok, &err];
        for input in fuzz_inputs(&seeds, 20_000) {
            let _ = parse_first_message(&input, false);
            let _ = parse_first_message(&input, true);
        }
        assert_eq!(
            parse_first_message(&err, true),
            First::Error("role \"x\" does not exist".into())
        );
        assert_eq!(parse_first_message(&err[..10], false), First::Incomplete);
    }

    /// Against a real PostgreSQL server (testkit, trust authentication): AuthenticationOk is
    /// L7OK. With trust the role is looked up only after AuthenticationOk, so an unknown role
    /// is L7OK too — the check says "alive", as HAProxy's does. A stopped server is L4CON.
    #[test]
    fn real_postgres() {
        switchyard_testkit::require_postgres_or_return!();
        let mut pg = switchyard_testkit::PgInstance::start().expect("start PostgreSQL");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let target = target_for(pg.addr());
        let outcome = runtime.block_on(check("postgres", &target));
        assert_eq!(outcome.status, CheckStatus::L7Ok, "{outcome:?}");
        assert_eq!(outcome.info, "PostgreSQL server is ok");
        let outcome = runtime.block_on(check("no_such_role", &target));
        assert_eq!(outcome.status, CheckStatus::L7Ok, "{outcome:?}");
        pg.stop().expect("stop PostgreSQL");
        let outcome = runtime.block_on(check("postgres", &target));
        assert_eq!(outcome.status, CheckStatus::L4Con, "{outcome:?}");
        assert_eq!(outcome.info, "Connection refused");
    }
}
