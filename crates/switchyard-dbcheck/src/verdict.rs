//! The decisions, as pure functions of what a server reported: no I/O here, so every rule is
//! unit-tested without a database. The engine modules ([`crate::check`]) only observe.

use std::time::Duration;

use switchyard_config::DatabaseRole;

use crate::{DbVerdict, ObservedRole};

/// State of a PostgreSQL standby's WAL receiver (`pg_stat_wal_receiver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalReceiver {
    /// `status = 'streaming'`.
    Streaming,
    /// No WAL receiver process (`None`) or one in another state (`starting`, `waiting`,
    /// `restarting`, `stopping`, ...): the standby is not receiving WAL from a primary.
    NotStreaming(Option<String>),
    /// Not visible (a role without `pg_read_all_stats` sees the row but not its status) or not
    /// asked (servers older than PostgreSQL 10).
    Unknown,
}

/// What a PostgreSQL server reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PgObservation {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Replay lag of a standby: 0 when everything received has been replayed, else
    /// `now() - pg_last_xact_replay_timestamp()`. `None` when unknown.
    pub lag: Option<Duration>,
    pub receiver: WalReceiver,
}

/// What a MySQL/MariaDB server reported.
#[derive(Debug, Clone, PartialEq)]
pub struct MysqlObservation {
    /// `@@global.read_only`.
    pub read_only: bool,
    /// `@@global.super_read_only`; `None` on MariaDB, which does not have it.
    pub super_read_only: Option<bool>,
    pub replica: ReplicaState,
}

/// `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS`.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaState {
    /// Not asked (a writable server, or a check that needs no replica information).
    NotQueried,
    /// The statement returned no row: replication is not configured.
    NotReplica,
    /// One row per channel folded into one: the largest lag, `None` when any channel's
    /// `Seconds_Behind_Source` is NULL (replication threads stopped or broken).
    Replica {
        lag: Option<Duration>,
        /// `Replica_IO_Running` / `Slave_IO_Running` of the worst channel.
        io_running: Option<String>,
        /// `Replica_SQL_Running` / `Slave_SQL_Running` of the worst channel.
        sql_running: Option<String>,
    },
    /// The statement failed (typically ERROR 1227: the check user lacks REPLICATION CLIENT).
    Unavailable { code: Option<u32>, message: String },
}

/// What a Galera node reported in `SHOW GLOBAL STATUS` (all `None`: not a Galera node).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GaleraObservation {
    /// `wsrep_local_state`: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced.
    pub local_state: Option<u32>,
    /// `wsrep_local_state_comment`.
    pub state_comment: Option<String>,
    /// `wsrep_ready` (`ON`/`OFF`).
    pub ready: Option<bool>,
    /// `wsrep_cluster_status` (`Primary`, `non-Primary`, `Disconnected`).
    pub cluster_status: Option<String>,
}

/// Seconds with one decimal: "0.2s", "12.0s".
pub fn fmt_lag(lag: Duration) -> String {
    format!("{:.1}s", lag.as_secs_f64())
}

/// A configured limit as written: "5s", "500ms", "1.5s".
pub fn fmt_limit(limit: Duration) -> String {
    if limit.subsec_nanos() == 0 {
        format!("{}s", limit.as_secs())
    } else if limit < Duration::from_secs(1) && limit.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", limit.as_millis())
    } else {
        format!("{}s", limit.as_secs_f64())
    }
}

fn verdict(up: bool, info: String, lag: Option<Duration>, role: ObservedRole) -> DbVerdict {
    DbVerdict {
        up,
        info,
        code: None,
        lag,
        role: Some(role),
    }
}

/// PostgreSQL: role `Primary` requires a server not in recovery; `Standby` one in recovery
/// whose lag (when `max_lag` is set) is within `max_lag`; `Any` accepts both but still holds
/// standbys to `max_lag`. With `max_lag` set, a standby whose WAL receiver is not streaming
/// (or whose lag is unknown) counts as infinitely late.
pub fn pg_verdict(role: DatabaseRole, max_lag: Option<Duration>, obs: &PgObservation) -> DbVerdict {
    if !obs.in_recovery {
        return match role {
            DatabaseRole::Standby => verdict(
                false,
                "primary (not in recovery), standby required".into(),
                None,
                ObservedRole::Primary,
            ),
            DatabaseRole::Primary | DatabaseRole::Any => {
                verdict(true, "primary".into(), None, ObservedRole::Primary)
            }
        };
    }
    let lag_text = obs.lag.map_or_else(|| "unknown".to_string(), fmt_lag);
    if role == DatabaseRole::Primary {
        return verdict(
            false,
            "in recovery (standby), primary required".into(),
            obs.lag,
            ObservedRole::Standby,
        );
    }
    let not_streaming = match &obs.receiver {
        WalReceiver::NotStreaming(Some(status)) => Some(format!("WAL receiver {status}")),
        WalReceiver::NotStreaming(None) => Some("no WAL receiver".to_string()),
        WalReceiver::Streaming | WalReceiver::Unknown => None,
    };
    let Some(max) = max_lag else {
        let info = match not_streaming {
            Some(why) => format!("standby, lag {lag_text}, {why}"),
            None => format!("standby, lag {lag_text}"),
        };
        return verdict(true, info, obs.lag, ObservedRole::Standby);
    };
    let limit = fmt_limit(max);
    let (up, info) = if let Some(why) = not_streaming {
        (
            false,
            format!("standby {why} (lag infinite) > max-lag {limit}"),
        )
    } else {
        match obs.lag {
            None => (false, format!("standby lag unknown > max-lag {limit}")),
            Some(lag) if lag > max => (
                false,
                format!("standby lag {} > max-lag {limit}", fmt_lag(lag)),
            ),
            Some(lag) => (true, format!("standby, lag {}", fmt_lag(lag))),
        }
    };
    verdict(up, info, obs.lag, ObservedRole::Standby)
}

fn replica_detail(io: &Option<String>, sql: &Option<String>) -> String {
    match (io, sql) {
        (None, None) => String::new(),
        _ => format!(
            ", IO {}, SQL {}",
            io.as_deref().unwrap_or("?"),
            sql.as_deref().unwrap_or("?")
        ),
    }
}

/// MySQL/MariaDB: `Primary` = writable (`read_only` and `super_read_only` both off);
/// `Standby` = read-only and, with `max_lag`, a replica within it (a NULL
/// `Seconds_Behind_Source` is infinite lag); `Any` accepts a writable server and holds a
/// read-only one to `max_lag`.
pub fn mysql_verdict(
    role: DatabaseRole,
    max_lag: Option<Duration>,
    obs: &MysqlObservation,
) -> DbVerdict {
    let super_ro = obs.super_read_only == Some(true);
    if !obs.read_only && !super_ro {
        return match role {
            DatabaseRole::Standby => verdict(
                false,
                "writable (primary), standby required".into(),
                None,
                ObservedRole::Primary,
            ),
            DatabaseRole::Primary | DatabaseRole::Any => {
                verdict(true, "primary".into(), None, ObservedRole::Primary)
            }
        };
    }
    let lag = match &obs.replica {
        ReplicaState::Replica { lag, .. } => *lag,
        _ => None,
    };
    if role == DatabaseRole::Primary {
        let what = if obs.read_only {
            "read-only"
        } else {
            "super_read_only"
        };
        return verdict(
            false,
            format!("{what} (replica), primary required"),
            lag,
            ObservedRole::Standby,
        );
    }
    let mut code = None;
    let limit = max_lag.map(fmt_limit);
    let (up, info) = match (&obs.replica, &limit) {
        (
            ReplicaState::Replica {
                lag: Some(lag),
                io_running,
                sql_running,
            },
            limit,
        ) => match (max_lag, limit) {
            (Some(max), Some(limit)) if *lag > max => (
                false,
                format!(
                    "replica lag {} > max-lag {limit}{}",
                    fmt_lag(*lag),
                    replica_detail(io_running, sql_running)
                ),
            ),
            _ => (true, format!("replica, lag {}", fmt_lag(*lag))),
        },
        (
            ReplicaState::Replica {
                lag: None,
                io_running,
                sql_running,
            },
            limit,
        ) => {
            let detail = replica_detail(io_running, sql_running);
            match limit {
                Some(limit) => (
                    false,
                    format!("replication broken (lag NULL){detail}, max-lag {limit}"),
                ),
                None => (
                    true,
                    format!("replica, replication broken (lag NULL){detail}"),
                ),
            }
        }
        (ReplicaState::NotReplica, Some(limit)) => {
            (false, format!("read-only, not a replica, max-lag {limit}"))
        }
        (ReplicaState::Unavailable { code: c, message }, Some(limit)) => {
            code = *c;
            (
                false,
                format!("replica status unavailable ({message}), max-lag {limit}"),
            )
        }
        (ReplicaState::NotQueried, Some(limit)) => {
            (false, format!("read-only, lag unknown > max-lag {limit}"))
        }
        (ReplicaState::NotReplica | ReplicaState::NotQueried, None) => {
            (true, "read-only".to_string())
        }
        (ReplicaState::Unavailable { .. }, None) => {
            (true, "read-only (replica status unavailable)".to_string())
        }
    };
    DbVerdict {
        up,
        info,
        code,
        lag,
        role: Some(ObservedRole::Standby),
    }
}

/// Name of a `wsrep_local_state` value.
pub fn galera_state_name(state: u32) -> &'static str {
    match state {
        1 => "Joining",
        2 => "Donor/Desynced",
        3 => "Joined",
        4 => "Synced",
        _ => "unknown state",
    }
}

/// Galera: UP when Synced (4), ready and part of the Primary component; Donor/Desynced (2)
/// only with `allow_donor`. The code is `wsrep_local_state`.
pub fn galera_verdict(allow_donor: bool, obs: &GaleraObservation) -> DbVerdict {
    let down = |info: String| DbVerdict {
        up: false,
        info,
        code: obs.local_state,
        lag: None,
        role: None,
    };
    if *obs == GaleraObservation::default() {
        return down("not a Galera node".into());
    }
    let Some(state) = obs.local_state else {
        return down("wsrep_local_state missing".into());
    };
    let name = obs
        .state_comment
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| galera_state_name(state).to_string());
    if let Some(status) = obs.cluster_status.as_deref() {
        if !status.eq_ignore_ascii_case("Primary") {
            return down(format!("non-Primary component ({status}), {name}"));
        }
    } else {
        return down(format!("cluster status unknown, {name}"));
    }
    match state {
        4 | 2 if obs.ready != Some(true) => down(format!("not ready, {name}")),
        4 => DbVerdict {
            up: true,
            ..down(name)
        },
        2 if allow_donor => DbVerdict {
            up: true,
            ..down(format!("{name} (allow-donor)"))
        },
        _ => down(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(f64) -> Duration = Duration::from_secs_f64;

    fn pg(in_recovery: bool, lag: Option<f64>, receiver: WalReceiver) -> PgObservation {
        PgObservation {
            in_recovery,
            lag: lag.map(S),
            receiver,
        }
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_lag(S(0.2)), "0.2s");
        assert_eq!(fmt_lag(S(12.0)), "12.0s");
        assert_eq!(fmt_limit(S(5.0)), "5s");
        assert_eq!(fmt_limit(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_limit(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn pg_primary() {
        let obs = pg(false, None, WalReceiver::NotStreaming(None));
        for role in [DatabaseRole::Primary, DatabaseRole::Any] {
            let v = pg_verdict(role, Some(S(1.0)), &obs);
            assert!(v.up);
            assert_eq!(v.info, "primary");
            assert_eq!(v.role, Some(ObservedRole::Primary));
        }
        let v = pg_verdict(DatabaseRole::Standby, None, &obs);
        assert!(!v.up);
        assert_eq!(v.info, "primary (not in recovery), standby required");
    }

    #[test]
    fn pg_standby() {
        let obs = pg(true, Some(0.2), WalReceiver::Streaming);
        let v = pg_verdict(DatabaseRole::Primary, None, &obs);
        assert!(!v.up);
        assert_eq!(v.info, "in recovery (standby), primary required");
        assert_eq!(v.role, Some(ObservedRole::Standby));

        for role in [DatabaseRole::Standby, DatabaseRole::Any] {
            let v = pg_verdict(role, None, &obs);
            assert!(v.up);
            assert_eq!(v.info, "standby, lag 0.2s");
            assert_eq!(v.lag, Some(S(0.2)));
            assert!(pg_verdict(role, Some(S(5.0)), &obs).up);
        }
    }

    #[test]
    fn pg_lag_limits() {
        let late = pg(true, Some(12.0), WalReceiver::Streaming);
        for role in [DatabaseRole::Standby, DatabaseRole::Any] {
            let v = pg_verdict(role, Some(S(5.0)), &late);
            assert!(!v.up);
            assert_eq!(v.info, "standby lag 12.0s > max-lag 5s");
            assert_eq!(v.lag, Some(S(12.0)));
            // Without max-lag any standby will do.
            assert!(pg_verdict(role, None, &late).up);
        }
        // Exactly at the limit is fine.
        assert!(pg_verdict(DatabaseRole::Standby, Some(S(12.0)), &late).up);

        let unknown = pg(true, None, WalReceiver::Streaming);
        let v = pg_verdict(DatabaseRole::Standby, Some(S(5.0)), &unknown);
        assert!(!v.up);
        assert_eq!(v.info, "standby lag unknown > max-lag 5s");
        let v = pg_verdict(DatabaseRole::Standby, None, &unknown);
        assert!(v.up);
        assert_eq!(v.info, "standby, lag unknown");
    }

    #[test]
    fn pg_receiver_not_streaming_is_infinite_lag() {
        let cut = pg(true, Some(0.0), WalReceiver::NotStreaming(None));
        let v = pg_verdict(DatabaseRole::Standby, Some(S(5.0)), &cut);
        assert!(!v.up);
        assert_eq!(
            v.info,
            "standby no WAL receiver (lag infinite) > max-lag 5s"
        );
        let v = pg_verdict(DatabaseRole::Any, None, &cut);
        assert!(v.up);
        assert_eq!(v.info, "standby, lag 0.0s, no WAL receiver");

        let waiting = pg(
            true,
            Some(0.0),
            WalReceiver::NotStreaming(Some("waiting".into())),
        );
        let v = pg_verdict(DatabaseRole::Any, Some(S(5.0)), &waiting);
        assert!(!v.up);
        assert_eq!(
            v.info,
            "standby WAL receiver waiting (lag infinite) > max-lag 5s"
        );
        // A status hidden by missing privileges is not held against the standby.
        let hidden = pg(true, Some(1.0), WalReceiver::Unknown);
        assert!(pg_verdict(DatabaseRole::Standby, Some(S(5.0)), &hidden).up);
    }

    fn my(read_only: bool, super_ro: Option<bool>, replica: ReplicaState) -> MysqlObservation {
        MysqlObservation {
            read_only,
            super_read_only: super_ro,
            replica,
        }
    }

    fn replica(lag: Option<u64>) -> ReplicaState {
        ReplicaState::Replica {
            lag: lag.map(Duration::from_secs),
            io_running: Some("Yes".into()),
            sql_running: Some(if lag.is_some() { "Yes" } else { "No" }.into()),
        }
    }

    #[test]
    fn mysql_writable() {
        for super_ro in [None, Some(false)] {
            let obs = my(false, super_ro, ReplicaState::NotQueried);
            for role in [DatabaseRole::Primary, DatabaseRole::Any] {
                let v = mysql_verdict(role, Some(S(1.0)), &obs);
                assert!(v.up, "{v:?}");
                assert_eq!(v.info, "primary");
                assert_eq!(v.role, Some(ObservedRole::Primary));
            }
            let v = mysql_verdict(DatabaseRole::Standby, None, &obs);
            assert!(!v.up);
            assert_eq!(v.info, "writable (primary), standby required");
        }
    }

    #[test]
    fn mysql_read_only_is_not_primary() {
        let v = mysql_verdict(
            DatabaseRole::Primary,
            None,
            &my(true, None, ReplicaState::NotQueried),
        );
        assert!(!v.up);
        assert_eq!(v.info, "read-only (replica), primary required");
        assert_eq!(v.role, Some(ObservedRole::Standby));
        // super_read_only alone (read_only reported off) still means not writable.
        let v = mysql_verdict(
            DatabaseRole::Primary,
            None,
            &my(false, Some(true), ReplicaState::NotQueried),
        );
        assert!(!v.up);
        assert_eq!(v.info, "super_read_only (replica), primary required");
    }

    #[test]
    fn mysql_replica_lag() {
        for role in [DatabaseRole::Standby, DatabaseRole::Any] {
            let v = mysql_verdict(role, Some(S(5.0)), &my(true, Some(true), replica(Some(3))));
            assert!(v.up);
            assert_eq!(v.info, "replica, lag 3.0s");
            assert_eq!(v.lag, Some(S(3.0)));

            let v = mysql_verdict(role, Some(S(5.0)), &my(true, Some(true), replica(Some(12))));
            assert!(!v.up);
            assert_eq!(v.info, "replica lag 12.0s > max-lag 5s, IO Yes, SQL Yes");
            assert!(mysql_verdict(role, None, &my(true, None, replica(Some(12)))).up);

            // NULL Seconds_Behind_Source: replication broken, infinite lag.
            let v = mysql_verdict(role, Some(S(5.0)), &my(true, None, replica(None)));
            assert!(!v.up);
            assert_eq!(
                v.info,
                "replication broken (lag NULL), IO Yes, SQL No, max-lag 5s"
            );
            assert_eq!(v.lag, None);
            let v = mysql_verdict(role, None, &my(true, None, replica(None)));
            assert!(v.up);
        }
    }

    #[test]
    fn mysql_read_only_without_replication() {
        let obs = my(true, None, ReplicaState::NotReplica);
        let v = mysql_verdict(DatabaseRole::Standby, None, &obs);
        assert!(v.up);
        assert_eq!(v.info, "read-only");
        let v = mysql_verdict(DatabaseRole::Standby, Some(S(5.0)), &obs);
        assert!(!v.up);
        assert_eq!(v.info, "read-only, not a replica, max-lag 5s");

        let denied = my(
            true,
            None,
            ReplicaState::Unavailable {
                code: Some(1227),
                message: "ERROR 1227 (42000): Access denied".into(),
            },
        );
        let v = mysql_verdict(DatabaseRole::Standby, Some(S(5.0)), &denied);
        assert!(!v.up);
        assert_eq!(v.code, Some(1227));
        assert!(
            v.info.starts_with("replica status unavailable"),
            "{}",
            v.info
        );
        let v = mysql_verdict(DatabaseRole::Any, None, &denied);
        assert!(v.up);
        assert_eq!(v.code, None);
    }

    fn galera(state: u32, comment: &str, ready: bool, status: &str) -> GaleraObservation {
        GaleraObservation {
            local_state: Some(state),
            state_comment: Some(comment.into()),
            ready: Some(ready),
            cluster_status: Some(status.into()),
        }
    }

    #[test]
    fn galera_synced() {
        let v = galera_verdict(false, &galera(4, "Synced", true, "Primary"));
        assert!(v.up);
        assert_eq!(v.info, "Synced");
        assert_eq!(v.code, Some(4));
        assert_eq!(v.role, None);
    }

    #[test]
    fn galera_donor() {
        let obs = galera(2, "Donor/Desynced", true, "Primary");
        let v = galera_verdict(false, &obs);
        assert!(!v.up);
        assert_eq!(v.info, "Donor/Desynced");
        assert_eq!(v.code, Some(2));
        let v = galera_verdict(true, &obs);
        assert!(v.up);
        assert_eq!(v.info, "Donor/Desynced (allow-donor)");
        assert_eq!(v.code, Some(2));
    }

    #[test]
    fn galera_down_states() {
        let v = galera_verdict(true, &galera(1, "Joining", false, "Primary"));
        assert!(!v.up);
        assert_eq!(v.info, "Joining");
        assert_eq!(v.code, Some(1));
        let v = galera_verdict(true, &galera(3, "", false, "Primary"));
        assert_eq!((v.up, v.info.as_str()), (false, "Joined"));
        let v = galera_verdict(true, &galera(4, "Synced", false, "Primary"));
        assert_eq!((v.up, v.info.as_str()), (false, "not ready, Synced"));
        let v = galera_verdict(true, &galera(4, "Synced", true, "non-Primary"));
        assert!(!v.up);
        assert_eq!(v.info, "non-Primary component (non-Primary), Synced");
        let v = galera_verdict(true, &galera(1, "Initialized", false, "Disconnected"));
        assert!(!v.up);
        assert!(v.info.starts_with("non-Primary component"), "{}", v.info);
    }

    #[test]
    fn not_galera() {
        let v = galera_verdict(true, &GaleraObservation::default());
        assert!(!v.up);
        assert_eq!(v.info, "not a Galera node");
        assert_eq!(v.code, None);
    }
}
