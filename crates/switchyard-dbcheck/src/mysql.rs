//! MySQL/MariaDB and Galera: mysql_async, plain TCP, text protocol only (no prepared
//! statements), `COM_QUIT` on the way out, even after a failed query.

use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};

use switchyard_config::{DatabaseCheck, DatabaseEngine, DatabaseRole};

use crate::verdict::{
    galera_verdict, mysql_verdict, GaleraObservation, MysqlObservation, ReplicaState,
};
use crate::{io_text, is_connect_error, one_line, DbError, DbVerdict};

/// ER_UNKNOWN_SYSTEM_VARIABLE: MariaDB has no `super_read_only`.
const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
/// ER_PARSE_ERROR: `SHOW REPLICA STATUS` before MySQL 8.0.22 / MariaDB 10.5.1.
const ER_PARSE_ERROR: u16 = 1064;

const GALERA_STATUS: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN \
     ('wsrep_local_state', 'wsrep_ready', 'wsrep_local_state_comment', 'wsrep_cluster_status')";

pub(crate) async fn check(
    spec: &DatabaseCheck,
    password: Option<&str>,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<DbVerdict, DbError> {
    tokio::time::timeout(timeout, session(spec, password, addr))
        .await
        .map_err(|_| DbError::Timeout)?
}

async fn session(
    spec: &DatabaseCheck,
    password: Option<&str>,
    addr: SocketAddr,
) -> Result<DbVerdict, DbError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .resolved_ips(Some(vec![addr.ip()]))
        .tcp_port(addr.port())
        .user(Some(spec.user.as_str()))
        .pass(password)
        .db_name(spec.database.as_deref())
        // Stay on the address under check: no switch to the server's unix socket.
        .prefer_socket(false)
        // Known values skip the `SELECT @@max_allowed_packet, @@wait_timeout` round trip.
        .max_allowed_packet(Some(4 << 20))
        .wait_timeout(Some(60))
        .stmt_cache_size(0)
        .tcp_nodelay(true);
    let mut conn = Conn::new(opts).await.map_err(login_error)?;
    let result = match spec.engine {
        DatabaseEngine::Galera => observe_galera(&mut conn)
            .await
            .map(|obs| galera_verdict(spec.allow_donor, &obs)),
        _ => observe_mysql(&mut conn, spec)
            .await
            .map(|obs| mysql_verdict(spec.role, spec.max_lag, &obs)),
    };
    // COM_QUIT whatever happened: a dropped connection is an "Aborted connection" warning
    // on the server. A failure to say goodbye does not change the verdict.
    let _ = conn.disconnect().await;
    result.map_err(query_error)
}

async fn observe_mysql(
    conn: &mut Conn,
    spec: &DatabaseCheck,
) -> Result<MysqlObservation, mysql_async::Error> {
    let (read_only, super_read_only) = match conn
        .query::<Row, _>("SELECT @@global.read_only, @@global.super_read_only")
        .await
    {
        Ok(rows) => {
            let row = rows.first();
            (
                flag(row.and_then(|r| r.as_ref(0))),
                Some(flag(row.and_then(|r| r.as_ref(1)))),
            )
        }
        Err(mysql_async::Error::Server(e)) if e.code == ER_UNKNOWN_SYSTEM_VARIABLE => {
            let rows = conn.query::<Row, _>("SELECT @@global.read_only").await?;
            (flag(rows.first().and_then(|r| r.as_ref(0))), None)
        }
        Err(e) => return Err(e),
    };
    let writable = !read_only && super_read_only != Some(true);
    // Replication only matters for a read-only server that may count as a standby.
    let replica = if writable || spec.role == DatabaseRole::Primary {
        ReplicaState::NotQueried
    } else {
        replica_status(conn).await?
    };
    Ok(MysqlObservation {
        read_only,
        super_read_only,
        replica,
    })
}

async fn replica_status(conn: &mut Conn) -> Result<ReplicaState, mysql_async::Error> {
    let rows = match conn.query::<Row, _>("SHOW REPLICA STATUS").await {
        Err(mysql_async::Error::Server(e)) if e.code == ER_PARSE_ERROR => {
            conn.query::<Row, _>("SHOW SLAVE STATUS").await
        }
        other => other,
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(e)) => {
            return Ok(ReplicaState::Unavailable {
                code: Some(u32::from(e.code)),
                message: one_line(&e.message),
            })
        }
        Err(e) => return Err(e),
    };
    if rows.is_empty() {
        return Ok(ReplicaState::NotReplica);
    }
    // Several rows = several channels (multi-source): the worst one decides.
    let mut worst: Option<(Option<Duration>, Option<String>, Option<String>)> = None;
    for row in &rows {
        let lag = column(row, &["Seconds_Behind_Source", "Seconds_Behind_Master"])
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let io = column(row, &["Replica_IO_Running", "Slave_IO_Running"]);
        let sql = column(row, &["Replica_SQL_Running", "Slave_SQL_Running"]);
        let worse = match &worst {
            None => true,
            Some((None, _, _)) => false,
            Some((Some(w), _, _)) => lag.is_none_or(|l| l > *w),
        };
        if worse {
            worst = Some((lag, io, sql));
        }
    }
    let (lag, io_running, sql_running) = worst.unwrap_or_default();
    Ok(ReplicaState::Replica {
        lag,
        io_running,
        sql_running,
    })
}

async fn observe_galera(conn: &mut Conn) -> Result<GaleraObservation, mysql_async::Error> {
    let mut obs = GaleraObservation::default();
    for row in conn.query::<Row, _>(GALERA_STATUS).await? {
        let (Some(name), value) = (text(row.as_ref(0)), text(row.as_ref(1))) else {
            continue;
        };
        match name.to_ascii_lowercase().as_str() {
            "wsrep_local_state" => {
                obs.local_state = value.and_then(|v| v.trim().parse().ok());
            }
            "wsrep_local_state_comment" => obs.state_comment = value,
            "wsrep_ready" => obs.ready = Some(value.is_some_and(|v| is_on(&v))),
            "wsrep_cluster_status" => obs.cluster_status = value,
            _ => {}
        }
    }
    Ok(obs)
}

/// A column by (any of its) names, as text; `None` when absent or NULL.
fn column(row: &Row, names: &[&str]) -> Option<String> {
    let index = row
        .columns_ref()
        .iter()
        .position(|c| names.iter().any(|n| c.name_str().eq_ignore_ascii_case(n)))?;
    text(row.as_ref(index))
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn is_on(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

fn flag(value: Option<&Value>) -> bool {
    text(value).is_some_and(|v| is_on(&v))
}

/// Errors of `Conn::new`: no TCP connection is [`DbError::Connect`], an error packet from the
/// server (access denied, unknown database, too many connections, host blocked) is
/// [`DbError::Auth`], the rest a protocol error.
fn login_error(e: mysql_async::Error) -> DbError {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) if is_connect_error(&io) => {
            DbError::Connect(io_text(&io))
        }
        mysql_async::Error::Server(e) => DbError::Auth(server_text(&e)),
        other => query_error(other),
    }
}

fn query_error(e: mysql_async::Error) -> DbError {
    DbError::Protocol(match e {
        mysql_async::Error::Server(e) => server_text(&e),
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io_text(&io),
        mysql_async::Error::Driver(d) => one_line(&d.to_string()),
        other => one_line(&other.to_string()),
    })
}

/// "ERROR 1045 (28000): Access denied for user 'x'@'host' (using password: YES)".
fn server_text(e: &mysql_async::ServerError) -> String {
    one_line(&e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert!(flag(Some(&Value::Int(1))));
        assert!(flag(Some(&Value::Bytes(b"1".to_vec()))));
        assert!(flag(Some(&Value::Bytes(b"ON".to_vec()))));
        assert!(!flag(Some(&Value::Bytes(b"0".to_vec()))));
        assert!(!flag(Some(&Value::NULL)));
        assert!(!flag(None));
        assert_eq!(text(Some(&Value::UInt(4))).as_deref(), Some("4"));
    }
}
