//! `option mysql-check [user NAME [post-41|pre-41]]`, with HAProxy 2.6's exact bytes.
//!
//! * Without a user nothing is sent: the server's first packet is read; a protocol-10 (or 9)
//!   handshake is L7OK with the server version as info, an ERR packet (0xff: "Host ... is
//!   blocked", "Too many connections") is L7STS with the MySQL error number as code.
//! * With a user, after the handshake one write carries two packets, as HAProxy sends them:
//!   a client authentication packet for `user` with an empty password (4.1 format, HAProxy
//!   2.6's default, or pre-4.1), then COM_QUIT. The second server packet decides: ERR is
//!   L7STS (code and message), anything else (OK, or an auth-switch request) is L7OK.
//!
//! 4.1 authentication packet (`post-41`), payload `34 + len(user)` bytes, sequence id 1:
//! capabilities `00 82 00 00` (CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION), max packet
//! `00 80 00 01`, charset `21` (utf8_general_ci), 23 zero bytes, `user` NUL, then `00` (empty
//! auth response). Pre-4.1 (`pre-41`), payload `7 + len(user)` bytes, sequence id 1:
//! capabilities `00 80`, max packet `00 00 01`, `user` NUL, `00`. COM_QUIT: `01 00 00 00 01`.
//!
//! Two choices differ slightly from HAProxy: it writes the packets right after connecting,
//! this writes them once the greeting is read (same bytes, same order for the server, but a
//! greeting that is an ERR followed by a close cannot be lost to a reset); and the ERR text
//! drops the `#SQLSTATE` marker of 4.1 errors.

use tokio::net::TcpStream;

use super::conn::{connect_target, read_some, write_all, IoError, BUF_SIZE};
use super::{Clock, Target};
use crate::status::{CheckOutcome, CheckStatus};

/// Runs one MySQL check.
pub async fn check(user: Option<&str>, post_41: bool, target: &Target) -> CheckOutcome {
    let clock = Clock::start(target);
    let mut stream = match connect_target(target, &clock).await {
        Ok(stream) => stream,
        Err(outcome) => return outcome,
    };
    let verdict = exchange(&mut stream, user, post_41, &clock).await;
    let outcome = clock.outcome(verdict.status, verdict.info);
    match verdict.code {
        Some(code) => outcome.with_code(code),
        None => outcome,
    }
}

/// The check's conclusion before timing is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    status: CheckStatus,
    code: Option<u32>,
    info: String,
}

impl Verdict {
    fn new(status: CheckStatus, info: impl Into<String>) -> Verdict {
        Verdict {
            status,
            code: None,
            info: info.into(),
        }
    }
}

async fn exchange(
    stream: &mut TcpStream,
    user: Option<&str>,
    post_41: bool,
    clock: &Clock,
) -> Verdict {
    let mut buf = Vec::with_capacity(256);
    let greeting = match read_packet(stream, &mut buf, 0, clock).await {
        Ok(range) => range,
        Err(verdict) => return verdict,
    };
    let version = match parse_greeting(&buf[greeting.clone()]) {
        Greeting::Handshake { version } => version,
        Greeting::Error(err) => return err.verdict(),
        Greeting::Invalid(why) => return Verdict::new(CheckStatus::L7Rsp, why),
    };
    let Some(user) = user else {
        return Verdict::new(CheckStatus::L7Ok, version);
    };
    match write_all(stream, &auth_and_quit(user, post_41), clock).await {
        Ok(()) => {}
        Err(IoError::Timeout) => {
            return Verdict::new(CheckStatus::L7Timeout, "timeout sending the authentication")
        }
        Err(IoError::Failed(text)) => return Verdict::new(CheckStatus::SockErr, text),
    }
    let reply = match read_packet(stream, &mut buf, greeting.end, clock).await {
        Ok(range) => range,
        Err(verdict) => return verdict,
    };
    match parse_error(&buf[reply]) {
        Some(err) => err.verdict(),
        None => Verdict::new(CheckStatus::L7Ok, version),
    }
}

/// Reads until the packet starting at `offset` of `buf` is complete; returns its payload range.
async fn read_packet(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    offset: usize,
    clock: &Clock,
) -> Result<std::ops::Range<usize>, Verdict> {
    loop {
        if let Some(range) = packet_at(buf, offset) {
            return Ok(range);
        }
        if buf.len() >= BUF_SIZE {
            return Err(Verdict::new(CheckStatus::L7Rsp, "MySQL packet too large"));
        }
        match read_some(stream, buf, BUF_SIZE, clock).await {
            Ok(0) | Err(IoError::Failed(_)) if buf.len() > offset => {
                return Err(Verdict::new(CheckStatus::L7Rsp, "truncated MySQL packet"))
            }
            Ok(0) => return Err(Verdict::new(CheckStatus::L7Rsp, "empty response")),
            Ok(_) => {}
            Err(IoError::Failed(text)) => return Err(Verdict::new(CheckStatus::SockErr, text)),
            Err(IoError::Timeout) => {
                return Err(Verdict::new(
                    CheckStatus::L7Timeout,
                    "timeout waiting for the MySQL server",
                ))
            }
        }
    }
}

/// The payload range of the packet starting at `offset` (3-byte little-endian length, 1-byte
/// sequence id), if all of it is in `buf`. Public for the fuzz targets.
pub fn packet_at(buf: &[u8], offset: usize) -> Option<std::ops::Range<usize>> {
    let header = buf.get(offset..offset.checked_add(4)?)?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let start = offset + 4;
    let end = start.checked_add(len)?;
    (end <= buf.len()).then_some(start..end)
}

/// The first packet a MySQL server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    /// An initial handshake (protocol 10, or 9 for very old servers).
    Handshake { version: String },
    /// An ERR packet instead of a handshake.
    Error(MysqlError),
    /// Not a MySQL greeting.
    Invalid(&'static str),
}

/// A MySQL ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlError {
    pub code: u16,
    pub message: String,
}

impl MysqlError {
    fn verdict(&self) -> Verdict {
        Verdict {
            status: CheckStatus::L7Sts,
            code: Some(u32::from(self.code)),
            info: self.message.clone(),
        }
    }
}

/// Parses the payload of the server's first packet.
pub fn parse_greeting(payload: &[u8]) -> Greeting {
    if let Some(err) = parse_error(payload) {
        return Greeting::Error(err);
    }
    match payload.first() {
        Some(9) | Some(10) => {}
        _ => return Greeting::Invalid("invalid MySQL handshake"),
    }
    let rest = &payload[1..];
    let Some(nul) = rest.iter().position(|&b| b == 0) else {
        return Greeting::Invalid("invalid MySQL handshake");
    };
    let version = &rest[..nul];
    // Protocol 10 continues with a 4-byte connection id and an 8-byte scramble.
    if payload[0] == 10 && rest.len() < nul + 1 + 4 + 8 {
        return Greeting::Invalid("truncated MySQL handshake");
    }
    if version.is_empty() || version.iter().any(|&b| b.is_ascii_control()) {
        return Greeting::Invalid("invalid MySQL handshake");
    }
    Greeting::Handshake {
        version: String::from_utf8_lossy(version).into_owned(),
    }
}

/// An ERR packet's code and message (the `#SQLSTATE` marker of 4.1 errors dropped).
pub fn parse_error(payload: &[u8]) -> Option<MysqlError> {
    if payload.first() != Some(&0xff) {
        return None;
    }
    let code = match payload.get(1..3) {
        Some(bytes) => u16::from_le_bytes([bytes[0], bytes[1]]),
        None => 0,
    };
    let mut message = payload.get(3..).unwrap_or(&[]);
    if message.first() == Some(&b'#') && message.len() >= 6 {
        message = &message[6..];
    }
    let message = String::from_utf8_lossy(message);
    let message: String = message.chars().filter(|c| !c.is_control()).collect();
    Some(MysqlError {
        code,
        message: message.trim().to_string(),
    })
}

/// The two packets HAProxy 2.6 sends for `option mysql-check user USER` (`post-41` being its
/// default): the client authentication packet (sequence id 1) and COM_QUIT (sequence id 0).
pub fn auth_and_quit(user: &str, post_41: bool) -> Vec<u8> {
    let user = user.as_bytes();
    let mut payload = Vec::with_capacity(40 + user.len());
    if post_41 {
        payload.extend_from_slice(&[0x00, 0x82, 0x00, 0x00]); // capabilities
        payload.extend_from_slice(&[0x00, 0x80, 0x00, 0x01]); // max packet
        payload.push(0x21); // character set
        payload.extend_from_slice(&[0u8; 23]); // reserved
    } else {
        payload.extend_from_slice(&[0x00, 0x80]); // capabilities
        payload.extend_from_slice(&[0x00, 0x00, 0x01]); // max packet
    }
    payload.extend_from_slice(user);
    payload.push(0); // end of the user name
    payload.push(0); // filler: empty password
    let len = payload.len() & 0x00ff_ffff;
    let mut out = Vec::with_capacity(payload.len() + 9);
    out.extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, 1]);
    out.extend_from_slice(&payload);
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0x00, 0x01]); // COM_QUIT
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kinds::testutil::{
        closed_port_target, fuzz_inputs, serve_bytes, serve_exchange, serve_silence, short_target,
        target_for,
    };

    /// A packet: 3-byte length, sequence id, payload.
    pub fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
        out.extend_from_slice(payload);
        out
    }

    /// A protocol-10 handshake as MariaDB 10.11 sends it.
    pub fn handshake(version: &str) -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(version.as_bytes());
        p.push(0);
        p.extend_from_slice(&42u32.to_le_bytes()); // connection id
        p.extend_from_slice(b"abcdefgh"); // scramble part 1
        p.push(0);
        p.extend_from_slice(&[0xfe, 0xf7]); // capabilities (low)
        p.push(0x2d); // charset
        p.extend_from_slice(&[0x02, 0x00]); // status
        p.extend_from_slice(&[0xff, 0x81]); // capabilities (high)
        p.push(21); // auth data length
        p.extend_from_slice(&[0u8; 6]);
        p.extend_from_slice(&[0u8; 4]); // MariaDB extended capabilities
        p.extend_from_slice(b"ijklmnopqrst\0");
        p.extend_from_slice(b"mysql_native_password\0");
        packet(0, &p)
    }

    fn err_packet(seq: u8, code: u16, sqlstate: Option<&str>, message: &str) -> Vec<u8> {
        let mut p = vec![0xff];
        p.extend_from_slice(&code.to_le_bytes());
        if let Some(state) = sqlstate {
            p.push(b'#');
            p.extend_from_slice(state.as_bytes());
        }
        p.extend_from_slice(message.as_bytes());
        packet(seq, &p)
    }

    #[test]
    fn auth_packet_bytes_post_41() {
        let bytes = auth_and_quit("haproxy", true);
        let mut want = vec![
            41, 0, 0, 1, 0x00, 0x82, 0x00, 0x00, 0x00, 0x80, 0x00, 0x01, 0x21,
        ];
        want.extend_from_slice(&[0u8; 23]);
        want.extend_from_slice(b"haproxy\0\0");
        want.extend_from_slice(&[1, 0, 0, 0, 1]);
        assert_eq!(bytes, want);
        assert_eq!(bytes[0] as usize, "haproxy".len() + 34);
    }

    #[test]
    fn auth_packet_bytes_pre_41() {
        let bytes = auth_and_quit("haproxy", false);
        let mut want = vec![14, 0, 0, 1, 0x00, 0x80, 0x00, 0x00, 0x01];
        want.extend_from_slice(b"haproxy\0\0");
        want.extend_from_slice(&[1, 0, 0, 0, 1]);
        assert_eq!(bytes, want);
    }

    #[tokio::test]
    async fn handshake_without_user_is_l7ok_with_version() {
        let addr = serve_bytes(handshake("5.5.5-10.11.6-MariaDB")).await;
        let outcome = check(None, true, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Ok);
        assert_eq!(outcome.info, "5.5.5-10.11.6-MariaDB");
        assert_eq!(outcome.code, None);
    }

    #[tokio::test]
    async fn greeting_error_is_l7sts_with_code() {
        let msg = "Host '10.0.0.5' is blocked because of many connection errors";
        let addr = serve_bytes(err_packet(0, 1129, None, msg)).await;
        let outcome = check(None, true, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Sts);
        assert_eq!(outcome.code, Some(1129));
        assert_eq!(outcome.info, msg);
    }

    #[tokio::test]
    async fn garbage_and_truncation_are_l7rsp() {
        let addr = serve_bytes(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()).await;
        assert_eq!(
            check(None, true, &target_for(addr)).await.status,
            CheckStatus::L7Rsp
        );
        let addr = serve_bytes(packet(0, b"\x0bnot-a-handshake\0")).await;
        assert_eq!(
            check(None, true, &target_for(addr)).await.status,
            CheckStatus::L7Rsp
        );
        let mut cut = handshake("8.0.36");
        cut.truncate(20);
        let addr = serve_bytes(cut).await;
        let outcome = check(None, true, &target_for(addr)).await;
        assert_eq!(
            (outcome.status, outcome.info.as_str()),
            (CheckStatus::L7Rsp, "truncated MySQL packet")
        );
        let addr = serve_bytes(Vec::new()).await;
        assert_eq!(
            check(None, true, &target_for(addr)).await.status,
            CheckStatus::L7Rsp
        );
    }

    #[tokio::test]
    async fn user_ok_packet_is_l7ok_and_bytes_are_haproxys() {
        let sent = auth_and_quit("check", true);
        let (addr, rx) = serve_exchange(
            handshake("8.0.36"),
            sent.len(),
            packet(2, &[0, 0, 0, 2, 0, 0, 0]),
        )
        .await;
        let outcome = check(Some("check"), true, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Ok, "{outcome:?}");
        assert_eq!(outcome.info, "8.0.36");
        assert_eq!(rx.await.unwrap(), sent);
    }

    #[tokio::test]
    async fn user_pre_41_sends_the_old_packet() {
        let sent = auth_and_quit("check", false);
        let (addr, rx) = serve_exchange(
            handshake("5.0.96"),
            sent.len(),
            packet(2, &[0, 0, 0, 2, 0, 0, 0]),
        )
        .await;
        let outcome = check(Some("check"), false, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Ok);
        assert_eq!(rx.await.unwrap(), sent);
    }

    #[tokio::test]
    async fn user_denied_is_l7sts_with_code_and_message() {
        let sent = auth_and_quit("nobody", true);
        let reply = err_packet(
            2,
            1045,
            Some("28000"),
            "Access denied for user 'nobody'@'localhost' (using password: NO)",
        );
        let (addr, _rx) = serve_exchange(handshake("8.0.36"), sent.len(), reply).await;
        let outcome = check(Some("nobody"), true, &target_for(addr)).await;
        assert_eq!(outcome.status, CheckStatus::L7Sts);
        assert_eq!(outcome.code, Some(1045));
        assert_eq!(
            outcome.info,
            "Access denied for user 'nobody'@'localhost' (using password: NO)"
        );
    }

    #[tokio::test]
    async fn user_no_reply_is_l7rsp_or_l7tout() {
        let sent = auth_and_quit("check", true);
        let (addr, _rx) = serve_exchange(handshake("8.0.36"), sent.len(), Vec::new()).await;
        assert_eq!(
            check(Some("check"), true, &target_for(addr)).await.status,
            CheckStatus::L7Rsp
        );
        let addr = serve_silence().await;
        assert_eq!(
            check(Some("check"), true, &short_target(addr)).await.status,
            CheckStatus::L7Timeout
        );
        assert_eq!(
            check(None, true, &closed_port_target()).await.status,
            CheckStatus::L4Con
        );
    }

    #[test]
    fn parsers_never_panic() {
        let hs = handshake("5.5.5-10.11.6-MariaDB");
        let err = err_packet(0, 1040, Some("08004"), "Too many connections");
        let seeds: [&[u8]; 3] = [&hs, &err, &hs[4..]];
        for input in fuzz_inputs(&seeds, 20_000) {
            let _ = parse_greeting(&input);
            let _ = parse_error(&input);
            for offset in [0, 1, 4, 200] {
                if let Some(range) = packet_at(&input, offset) {
                    let _ = parse_greeting(&input[range]);
                }
            }
        }
        assert_eq!(
            parse_error(&[0xff]),
            Some(MysqlError {
                code: 0,
                message: String::new()
            })
        );
        assert_eq!(packet_at(&[0xff, 0xff, 0xff, 0], usize::MAX - 2), None);
    }
}
