//! Database-role checks (a Switchyard extension): log in with real authentication and ask
//! the database what it is, so a backend can require a primary, a standby within a lag, or a
//! Synced Galera node, without external scripts.
//!
//! ```no_run
//! # async fn demo(spec: &switchyard_config::DatabaseCheck) {
//! use std::time::Duration;
//! let addr = "127.0.0.1:5432".parse().unwrap();
//! match switchyard_dbcheck::check(spec, addr, Duration::from_secs(2)).await {
//!     Ok(v) if v.up => println!("UP: {}", v.info),
//!     Ok(v) => println!("DOWN: {}", v.info),
//!     Err(e) => println!("check failed: {e}"),
//! }
//! # }
//! ```
//!
//! * Every call opens a fresh connection (a check must see a restart or a promotion), bounds
//!   the whole check by `timeout`, and says goodbye properly (PostgreSQL `Terminate`, MySQL
//!   `COM_QUIT`) so servers do not log aborted connections.
//! * What is observed and what is decided are split: the engine modules only read values; the
//!   rules live in [`verdict`] as pure functions.
//! * The password is read at each check ([`switchyard_config::Secret::resolve`]) and never
//!   appears in [`DbVerdict::info`] or in a [`DbError`]: besides never formatting it, every
//!   text leaving this crate is scrubbed of it (passwords of 3+ characters).
//! * No TLS yet: PostgreSQL trust/password/md5/SCRAM-SHA-256, MySQL
//!   `mysql_native_password`/`caching_sha2_password` (RSA key exchange over plain TCP).

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_config::{DatabaseCheck, DatabaseEngine, Secret};

mod mysql;
mod pg;
pub mod verdict;

/// The role a server turned out to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedRole {
    /// PostgreSQL not in recovery; MySQL writable.
    Primary,
    /// PostgreSQL in recovery; MySQL read-only.
    Standby,
}

/// The outcome of a check in which the server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct DbVerdict {
    /// The server is what the check asked for.
    pub up: bool,
    /// Short text for logs and the stats page ("primary", "standby, lag 0.2s",
    /// "standby lag 12.0s > max-lag 5s", "Synced", ...). Never contains the password.
    pub info: String,
    /// Galera: `wsrep_local_state`; MySQL: the error number when a needed query failed.
    pub code: Option<u32>,
    /// Replication lag of a standby/replica, when known.
    pub lag: Option<Duration>,
    /// What the server is (`None` for Galera).
    pub role: Option<ObservedRole>,
}

/// A check that could not get a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// TCP-level failure: refused, unreachable, or no connection within the timeout
    /// (then the text starts with "connect timeout", see [`DbError::is_connect_timeout`]).
    /// HAProxy's L4CON / L4TOUT.
    #[error("{0}")]
    Connect(String),
    /// Connected, but the check did not finish within the timeout (L7TOUT).
    #[error("timeout")]
    Timeout,
    /// Not the expected protocol, connection lost mid-check, a query failed (L7RSP).
    #[error("{0}")]
    Protocol(String),
    /// The server refused the login: authentication, no such database, too many connections,
    /// still starting up... with the server's message; or the password could not be read
    /// (`password-file: ...`, `password-env: ...`) (L7STS).
    #[error("{0}")]
    Auth(String),
}

impl DbError {
    /// A TCP connection that was not established within the timeout (HAProxy's L4TOUT rather
    /// than L4CON). PostgreSQL only: mysql_async connects itself, so a MySQL server that
    /// never answers the SYN shows up as [`DbError::Timeout`].
    pub fn is_connect_timeout(&self) -> bool {
        matches!(self, DbError::Connect(text) if text.starts_with(CONNECT_TIMEOUT))
    }

    fn map_text(self, f: impl Fn(String) -> String) -> DbError {
        match self {
            DbError::Connect(t) => DbError::Connect(f(t)),
            DbError::Timeout => DbError::Timeout,
            DbError::Protocol(t) => DbError::Protocol(f(t)),
            DbError::Auth(t) => DbError::Auth(f(t)),
        }
    }
}

pub(crate) const CONNECT_TIMEOUT: &str = "connect timeout";

/// Runs one database-role check of `spec` against `addr`, all of it (connect, login,
/// queries, goodbye) within `timeout`.
pub async fn check(
    spec: &DatabaseCheck,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<DbVerdict, DbError> {
    let password = match &spec.password {
        Some(secret) => Some(resolve_password(secret)?),
        None => None,
    };
    let result = match spec.engine {
        DatabaseEngine::Postgres => pg::check(spec, password.as_deref(), addr, timeout).await,
        DatabaseEngine::Mysql | DatabaseEngine::Galera => {
            mysql::check(spec, password.as_deref(), addr, timeout).await
        }
    };
    let secret = password.as_deref().unwrap_or("");
    match result {
        Ok(mut verdict) => {
            verdict.info = redact(verdict.info, secret);
            Ok(verdict)
        }
        Err(e) => Err(e.map_text(|t| redact(t, secret))),
    }
}

/// Reads the password now; failures are [`DbError::Auth`] naming the file or variable, never
/// a panic.
fn resolve_password(secret: &Secret) -> Result<String, DbError> {
    secret.resolve().map_err(|e| {
        DbError::Auth(match secret {
            Secret::File(path) => format!("password-file: {}: {e}", path.display()),
            Secret::Env(_) => format!("password-env: {e}"),
            Secret::Inline(_) => format!("password: {e}"),
        })
    })
}

/// Replaces every occurrence of `secret` in `text` (defence in depth: a server echoing what it
/// was sent, an error quoting its input). Secrets shorter than 3 characters are not scrubbed:
/// they would mangle every message and are no secret anyway.
pub(crate) fn redact(text: String, secret: &str) -> String {
    if secret.len() >= 3 && text.contains(secret) {
        text.replace(secret, "***")
    } else {
        text
    }
}

/// One line, bounded: server messages can carry DETAIL/HINT lines or be long.
pub(crate) fn one_line(text: &str) -> String {
    const MAX: usize = 200;
    let line = text.lines().next().unwrap_or("").trim();
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &line[..end])
}

/// An OS error without the "(os error 111)" suffix, lower-cased like HAProxy's texts.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut => format!("{CONNECT_TIMEOUT} (kernel)"),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        ConnectionReset => "connection reset by peer".into(),
        UnexpectedEof => "connection closed by server".into(),
        _ => one_line(&e.to_string()),
    }
}

/// I/O errors that mean the TCP connection was never established.
pub(crate) fn is_connect_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable | AddrNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::{DatabaseRole, Secret};

    const PASSWORD: &str = "Zq7-distinctive-p4ss";

    fn spec(engine: DatabaseEngine, password: Option<Secret>) -> DatabaseCheck {
        DatabaseCheck {
            engine,
            user: "checker".into(),
            password,
            database: None,
            role: DatabaseRole::Any,
            max_lag: None,
            allow_donor: false,
        }
    }

    /// A loopback port nobody listens on.
    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact(format!("bad password {PASSWORD}!"), PASSWORD),
            "bad password ***!"
        );
        assert_eq!(redact("abc".into(), ""), "abc");
        assert_eq!(redact("a b".into(), "a"), "a b");
        assert_eq!(one_line("FATAL: x\nDETAIL: y"), "FATAL: x");
        assert!(one_line(&"é".repeat(300)).ends_with("..."));
    }

    #[tokio::test]
    async fn unreadable_password_file_is_auth_error() {
        for engine in [
            DatabaseEngine::Postgres,
            DatabaseEngine::Mysql,
            DatabaseEngine::Galera,
        ] {
            let s = spec(
                engine,
                Some(Secret::File("/nonexistent/switchyard/pw".into())),
            );
            let err = check(&s, closed_port(), Duration::from_secs(1))
                .await
                .unwrap_err();
            match &err {
                DbError::Auth(text) => {
                    assert!(
                        text.starts_with("password-file: /nonexistent/switchyard/pw: "),
                        "{text}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        let s = spec(
            DatabaseEngine::Postgres,
            Some(Secret::Env("SWITCHYARD_DBCHECK_TEST_UNSET_VAR".into())),
        );
        let err = check(&s, closed_port(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DbError::Auth(t) if t.starts_with("password-env: ")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn refused_is_connect_error_without_secret() {
        for engine in [
            DatabaseEngine::Postgres,
            DatabaseEngine::Mysql,
            DatabaseEngine::Galera,
        ] {
            let s = spec(engine, Some(Secret::Inline(PASSWORD.into())));
            let err = check(&s, closed_port(), Duration::from_secs(2))
                .await
                .unwrap_err();
            assert_eq!(
                err,
                DbError::Connect("connection refused".into()),
                "{engine:?}"
            );
            assert!(!format!("{err} {err:?}").contains(PASSWORD));
        }
    }

    /// A server that accepts and then says nothing: the whole check is bounded.
    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        for engine in [DatabaseEngine::Postgres, DatabaseEngine::Mysql] {
            let s = spec(engine, Some(Secret::Inline(PASSWORD.into())));
            let started = std::time::Instant::now();
            let err = check(&s, addr, Duration::from_millis(300))
                .await
                .unwrap_err();
            assert_eq!(err, DbError::Timeout, "{engine:?}");
            assert!(started.elapsed() < Duration::from_secs(2));
        }
    }

    /// A server that answers garbage echoing the password back: a protocol error, scrubbed.
    #[tokio::test]
    async fn garbage_is_protocol_error_and_scrubbed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _serve = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let _ = sock.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
                    let _ = sock.read(&mut buf).await;
                });
            }
        });
        for engine in [DatabaseEngine::Postgres, DatabaseEngine::Mysql] {
            let s = spec(engine, Some(Secret::Inline(PASSWORD.into())));
            let err = check(&s, addr, Duration::from_secs(3)).await.unwrap_err();
            assert!(matches!(err, DbError::Protocol(_)), "{engine:?}: {err:?}");
            assert!(!format!("{err} {err:?}").contains(PASSWORD));
        }
    }
}
