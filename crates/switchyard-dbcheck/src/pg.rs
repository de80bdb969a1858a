//! PostgreSQL: tokio-postgres over a TCP stream we open ourselves (so a TCP failure is told
//! apart from a refused login), simple-query protocol (one round trip, no prepared
//! statements: works through poolers too), `Terminate` on the way out.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use switchyard_config::DatabaseCheck;

use crate::verdict::{pg_verdict, PgObservation, WalReceiver};
use crate::{io_text, one_line, DbError, DbVerdict, CONNECT_TIMEOUT};

/// Database used when the check names none: present on virtually every cluster, unlike the
/// libpq default (a database named after the user).
const DEFAULT_DATABASE: &str = "postgres";

/// Role, lag and WAL receiver in one round trip (PostgreSQL 10+). On a primary the lag column
/// is NULL and the receiver view empty. Lag is 0 when all received WAL is replayed (so an idle
/// primary does not make its standbys look late), else the age of the last replayed commit.
const OBSERVE: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
     ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END, \
     (SELECT status FROM pg_stat_wal_receiver LIMIT 1), \
     EXISTS (SELECT 1 FROM pg_stat_wal_receiver)";

/// Before PostgreSQL 10 (no `pg_last_wal_*`, no `pg_stat_wal_receiver`): role only.
const OBSERVE_OLD: &str = "SELECT pg_is_in_recovery()";

pub(crate) async fn check(
    spec: &DatabaseCheck,
    password: Option<&str>,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<DbVerdict, DbError> {
    let deadline = Instant::now() + timeout;
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(DbError::Connect(format!(
                "{CONNECT_TIMEOUT} after {}ms",
                timeout.as_millis()
            )))
        }
        Ok(Err(e)) => return Err(DbError::Connect(io_text(&e))),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    let obs = timeout_at(deadline, session(spec, password, stream, deadline))
        .await
        .map_err(|_| DbError::Timeout)??;
    Ok(pg_verdict(spec.role, spec.max_lag, &obs))
}

async fn session(
    spec: &DatabaseCheck,
    password: Option<&str>,
    stream: TcpStream,
    deadline: Instant,
) -> Result<PgObservation, DbError> {
    let mut config = tokio_postgres::Config::new();
    config
        .user(&spec.user)
        .dbname(spec.database.as_deref().unwrap_or(DEFAULT_DATABASE))
        .application_name("switchyard-check")
        .ssl_mode(tokio_postgres::config::SslMode::Disable);
    if let Some(password) = password {
        config.password(password);
    }
    let (client, connection) = config
        .connect_raw(stream, NoTls)
        .await
        .map_err(login_error)?;
    // The connection future does the I/O. Run it alongside the queries in this task (no
    // spawned task may outlive the check); dropping the client at the end of `work` makes
    // it send Terminate and finish.
    let work = async move {
        let obs = observe(&client).await;
        drop(client);
        obs
    };
    let mut work = std::pin::pin!(work);
    let mut connection = std::pin::pin!(connection);
    let mut closed = false;
    let obs = loop {
        tokio::select! {
            obs = &mut work => break obs,
            // Ended early (server gone): `work` then fails with "connection closed".
            _ = &mut connection, if !closed => closed = true,
        }
    };
    if !closed {
        // Flush Terminate and shut the socket down. The answer is known by now: a slow
        // goodbye must not turn it into a timeout (this inner deadline is polled first).
        let _ = timeout_at(deadline, connection).await;
    }
    obs
}

async fn observe(client: &Client) -> Result<PgObservation, DbError> {
    let row = match first_row(client, OBSERVE).await {
        Err(e)
            if matches!(
                e.code(),
                Some(&SqlState::UNDEFINED_FUNCTION) | Some(&SqlState::UNDEFINED_TABLE)
            ) =>
        {
            let row = first_row(client, OBSERVE_OLD).await.map_err(query_error)?;
            return Ok(PgObservation {
                in_recovery: parse_bool(row.first().cloned().flatten())?,
                lag: None,
                receiver: WalReceiver::Unknown,
            });
        }
        other => other.map_err(query_error)?,
    };
    let mut cols = row.into_iter();
    let in_recovery = parse_bool(cols.next().flatten())?;
    let lag = cols
        .next()
        .flatten()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .map(|s| Duration::from_secs_f64(s.max(0.0)));
    let status = cols.next().flatten();
    let has_receiver = parse_bool(cols.next().flatten()).unwrap_or(false);
    let receiver = match (has_receiver, status) {
        (false, _) => WalReceiver::NotStreaming(None),
        (true, Some(s)) if s == "streaming" => WalReceiver::Streaming,
        (true, Some(s)) => WalReceiver::NotStreaming(Some(s)),
        // The row exists but its status is hidden (no pg_read_all_stats).
        (true, None) => WalReceiver::Unknown,
    };
    Ok(PgObservation {
        in_recovery,
        lag,
        receiver,
    })
}

/// The first row of a simple query, as text columns.
async fn first_row(
    client: &Client,
    sql: &str,
) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
    for message in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok((0..row.len())
                .map(|i| row.get(i).map(str::to_string))
                .collect());
        }
    }
    Ok(Vec::new())
}

fn parse_bool(value: Option<String>) -> Result<bool, DbError> {
    match value.as_deref() {
        Some("t") | Some("true") | Some("on") => Ok(true),
        Some("f") | Some("false") | Some("off") => Ok(false),
        other => Err(DbError::Protocol(format!(
            "unexpected boolean from server: {}",
            one_line(other.unwrap_or("no value"))
        ))),
    }
}

/// The server's own words for a database error: "message (SQLSTATE 28P01)".
fn db_text(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error()
        .map(|db| format!("{} (SQLSTATE {})", one_line(db.message()), db.code().code()))
}

/// An error from the startup phase: whatever the server refused is [`DbError::Auth`]
/// (HAProxy reports a server's error answer as L7STS); anything else is a protocol error.
fn login_error(e: tokio_postgres::Error) -> DbError {
    if let Some(text) = db_text(&e) {
        return DbError::Auth(text);
    }
    let text = full_text(&e);
    if text.contains("password missing") {
        return DbError::Auth("server asks for a password but none is configured".into());
    }
    if text.starts_with("authentication error") {
        // Client-side SCRAM failure, e.g. the server's signature did not verify.
        return DbError::Auth(one_line(&text));
    }
    protocol_error(e)
}

/// tokio-postgres' Display omits the cause ("invalid configuration"): add it.
fn full_text(e: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn query_error(e: tokio_postgres::Error) -> DbError {
    match db_text(&e) {
        Some(text) => DbError::Protocol(text),
        None => protocol_error(e),
    }
}

fn protocol_error(e: tokio_postgres::Error) -> DbError {
    use std::error::Error as _;
    let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
    let text = match io {
        Some(io) => format!("{e}: {}", io_text(io)),
        None if e.is_closed() => "connection closed by server".to_string(),
        None => one_line(&full_text(&e)),
    };
    DbError::Protocol(text)
}
