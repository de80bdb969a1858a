//! One check run of any kind, database-role checks included.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchyard_config::HealthCheck;
use switchyard_dbcheck::DbError;

use crate::kinds::{self, Target};
use crate::status::{CheckOutcome, CheckStatus};

/// Runs one check of `check` against `target`.
pub async fn run_check(check: &HealthCheck, target: &Target) -> CheckOutcome {
    match check {
        HealthCheck::Database(spec) => {
            let started = Instant::now();
            let result = switchyard_dbcheck::check(spec, target.addr, target.timeout).await;
            database_outcome(result, started.elapsed())
        }
        other => kinds::run(other, target).await,
    }
}

/// Maps a database verdict onto HAProxy's statuses: a server that answered but is not in the
/// role asked for is a layer-7 status failure, like an HTTP 503.
fn database_outcome(
    result: Result<switchyard_dbcheck::DbVerdict, DbError>,
    duration: Duration,
) -> CheckOutcome {
    match result {
        Ok(verdict) => {
            let status = if verdict.up {
                CheckStatus::L7Ok
            } else {
                CheckStatus::L7Sts
            };
            let outcome = CheckOutcome::new(status, duration, verdict.info);
            match verdict.code {
                Some(code) => outcome.with_code(code),
                None => outcome,
            }
        }
        Err(error @ DbError::Connect(_)) if error.is_connect_timeout() => {
            CheckOutcome::new(CheckStatus::L4Timeout, duration, error_info(error))
        }
        Err(DbError::Connect(info)) => CheckOutcome::new(CheckStatus::L4Con, duration, info),
        Err(DbError::Timeout) => CheckOutcome::new(CheckStatus::L7Timeout, duration, "timeout"),
        Err(DbError::Protocol(info)) => CheckOutcome::new(CheckStatus::L7Rsp, duration, info),
        Err(DbError::Auth(info)) => CheckOutcome::new(CheckStatus::L7Sts, duration, info),
    }
}

/// The address a check connects to: the server's, with `addr`/`port` overrides.
pub fn check_address(
    server: SocketAddr,
    addr: Option<std::net::IpAddr>,
    port: Option<u16>,
) -> SocketAddr {
    SocketAddr::new(addr.unwrap_or(server.ip()), port.unwrap_or(server.port()))
}

fn error_info(error: DbError) -> String {
    match error {
        DbError::Connect(info) | DbError::Protocol(info) | DbError::Auth(info) => info,
        DbError::Timeout => "timeout".to_string(),
    }
}
