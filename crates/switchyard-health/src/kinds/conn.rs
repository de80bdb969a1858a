//! Connection helpers shared by the kinds: connect with both timeouts, bounded reads and
//! writes against the check's deadline, OS error texts without Rust's "(os error N)" suffix.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Clock, Target};
use crate::status::{CheckOutcome, CheckStatus};

/// HAProxy's default buffer size (`tune.bufsize`): the most a check reads.
pub(crate) const BUF_SIZE: usize = 16 * 1024;

/// Why a connect did not succeed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// Refused, unreachable, reset...: the OS error text ("Connection refused").
    Failed(String),
    /// No answer within `connect_timeout` (or the check's deadline).
    Timeout,
}

/// Why a read or a write did not succeed.
#[derive(Debug)]
pub(crate) enum IoError {
    /// The check's deadline passed.
    Timeout,
    /// A socket error: its OS text ("Connection reset by peer").
    Failed(String),
}

/// The OS text of an error, as `strerror` would print it.
pub(crate) fn error_text(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// Connects to `addr` within min(`connect_timeout`, time left in the check).
pub(crate) async fn connect(
    addr: SocketAddr,
    target: &Target,
    clock: &Clock,
) -> Result<TcpStream, ConnectError> {
    let limit = target.connect_timeout.min(clock.remaining());
    match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(err)) if err.kind() == io::ErrorKind::TimedOut => Err(ConnectError::Timeout),
        Ok(Err(err)) => Err(ConnectError::Failed(error_text(&err))),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Connects to the target's address like [`connect`]; when that fails, the check's outcome:
/// L4CON with the OS error text, or L4TOUT "Connection timed out".
pub(crate) async fn connect_target(
    target: &Target,
    clock: &Clock,
) -> Result<TcpStream, CheckOutcome> {
    connect(target.addr, target, clock)
        .await
        .map_err(|err| match err {
            ConnectError::Failed(text) => clock.outcome(CheckStatus::L4Con, text),
            ConnectError::Timeout => clock.outcome(CheckStatus::L4Timeout, "Connection timed out"),
        })
}

/// Reads once more into `buf`, never growing it past `limit` bytes. Returns the number of
/// bytes read: 0 means end of stream (or `buf` already full, which callers check first).
pub(crate) async fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
    clock: &Clock,
) -> Result<usize, IoError> {
    let start = buf.len();
    if start >= limit {
        return Ok(0);
    }
    let mut chunk = [0u8; 4096];
    let room = (limit - start).min(chunk.len());
    match tokio::time::timeout(clock.remaining(), stream.read(&mut chunk[..room])).await {
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Ok(Err(err)) => Err(IoError::Failed(error_text(&err))),
        Err(_) => Err(IoError::Timeout),
    }
}

/// One more read (up to [`BUF_SIZE`]) of a response judged once complete or at its end.
/// `Ok(true)` at end of stream, which a socket error after some bytes counts as (a reset right
/// after the last bytes is common: judge what came, like HAProxy); `Ok(false)` when more bytes
/// came. Fails with L7TOUT and `timeout_info` at the deadline, with SOCKERR and the OS text on a
/// socket error before any byte.
pub(crate) async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    clock: &Clock,
    timeout_info: &str,
) -> Result<bool, (CheckStatus, String)> {
    match read_some(stream, buf, BUF_SIZE, clock).await {
        Ok(n) => Ok(n == 0),
        Err(IoError::Timeout) => Err((CheckStatus::L7Timeout, timeout_info.into())),
        Err(IoError::Failed(text)) if buf.is_empty() => Err((CheckStatus::SockErr, text)),
        Err(IoError::Failed(_)) => Ok(true),
    }
}

/// Writes all of `data` before the check's deadline.
pub(crate) async fn write_all(
    stream: &mut TcpStream,
    data: &[u8],
    clock: &Clock,
) -> Result<(), IoError> {
    match tokio::time::timeout(clock.remaining(), stream.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(IoError::Failed(error_text(&err))),
        Err(_) => Err(IoError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_drops_the_os_error_suffix() {
        let err = io::Error::from_raw_os_error(111);
        assert_eq!(error_text(&err), "Connection refused");
        let custom = io::Error::other("plain");
        assert_eq!(error_text(&custom), "plain");
    }
}
