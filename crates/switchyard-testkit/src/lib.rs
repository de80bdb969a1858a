//! Test harness shared by the integration tests and benchmarks.
//!
//! * [`free_port`] / [`wait_for_port`]: loopback ports that are not handed out twice, not even
//!   to another test binary running in parallel (nextest); [`is_listening`] tells a listener
//!   is up without connecting to it.
//! * [`ChildGuard`]: a spawned process whose output goes to files, killed when dropped.
//! * [`PgInstance`]: a real, throw-away PostgreSQL server (run as the `postgres` OS user when the
//!   tests run as root), driven with the real `psql` and `pgbench`.
//! * [`Switchyard`] / [`check_config`]: the real `switchyard` binary with a config from a string.
//! * [`require_postgres`]: tests that need PostgreSQL fail loudly when it is missing, unless
//!   `SWITCHYARD_SKIP_PG=1` says skipping is fine.
//! * Streaming replication: [`PgInstance::start_primary`], [`PgInstance::start_standby`]
//!   (real `pg_basebackup -R`), [`PgInstance::promote`], replay pause/resume and lag.
//! * [`MariaInstance`]: a real, throw-away MariaDB server (run as the `mysql` OS user when root),
//!   driven with the real `mariadb` client; [`GaleraCluster`]: N real `mariadbd` nodes forming a
//!   Galera cluster on loopback. [`require_mariadb`] / [`require_galera`] skip only with
//!   `SWITCHYARD_SKIP_MARIADB=1`.
//! * [`require_command`] / [`tool_missing`]: a test whose tool (haproxy, chromium, promtool...)
//!   is missing prints `SKIP: ...`, except in CI (`CI` set), where it fails.
//!
//! ```no_run
//! use std::time::Duration;
//! use switchyard_testkit::{free_port, require_postgres_or_return, PgInstance, Switchyard};
//!
//! # fn main() -> anyhow::Result<()> {
//! require_postgres_or_return!(Ok(()));
//! let a = PgInstance::start_named("a")?;
//! let b = PgInstance::start_named("b")?;
//! let front = free_port();
//! let config = format!(
//!     "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
//!      listen pg\n    bind 127.0.0.1:{front}\n    balance roundrobin\n\
//!      server a 127.0.0.1:{}\n    server b 127.0.0.1:{}\n",
//!     a.port(),
//!     b.port()
//! );
//! // In crates/switchyard/tests: Switchyard::start(env!("CARGO_BIN_EXE_switchyard"), &config)
//! let mut proxy = Switchyard::start("target/debug/switchyard", &config)?;
//! let first = a.node_name(Some(front))?; // "a" or "b": whoever answered through the proxy
//! a.pgbench_init(1)?;
//! let report = a.pgbench(None, &["-c", "4", "-T", "2"])?;
//! assert_eq!(report.failed, 0);
//! assert!(proxy.stop(Duration::from_secs(10)).is_some(), "{}", proxy.output_so_far());
//! # let _ = (first, b);
//! # Ok(())
//! # }
//! ```
//!
//! Environment knobs: `SWITCHYARD_PG_BIN` (directory holding `initdb`/`postgres`),
//! `SWITCHYARD_TEST_TMPDIR` (where temp dirs go), `SWITCHYARD_SKIP_PG=1`,
//! `SWITCHYARD_SKIP_MARIADB=1` (MariaDB and Galera), `SWITCHYARD_KEEP_TMP=1` (keep temp dirs for
//! post-mortems).

mod maria;
mod net;
mod osuser;
mod pg;
mod ports;
mod process;
mod proxy;
mod server;
mod tmp;

pub use maria::{
    have_galera, have_mariadb, mariadb_client_path, mariadb_node_name_at, mariadb_sql,
    mariadb_sql_as, mariadbd_path, require_galera, require_mariadb, GaleraCluster, MariaInstance,
    GALERA_PROVIDER, WSREP_DONOR_DESYNCED, WSREP_JOINED, WSREP_JOINING, WSREP_SYNCED,
};
pub use net::{
    cli, echo_server, greeter, greeting_through, http_get, http_get_path, http_port_server,
    stat_row, stat_rows, EchoLoad, LoadReport,
};
pub use pg::{
    have_postgres, node_name_at, pg_bin_dir, pg_tool, pgbench, psql, require_postgres, PgInstance,
    PgbenchReport, NODE_TABLE,
};
pub use ports::{free_port, is_listening, wait_for_port};
pub use process::{
    fds_and_rss, have_command, in_ci, poll_until, promtool_check, require_command,
    run_with_timeout, tool_missing, ChildGuard,
};
pub use proxy::{bind_ports, check_config, check_config_output, CheckOutput, Switchyard};
pub use tmp::TempDir;

/// Serializes this crate's unit tests that start database servers (PostgreSQL, MariaDB,
/// Galera), to be frugal with CPU.
#[cfg(test)]
pub(crate) static SERVER_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Re-exported so integration tests can name signals without their own `libc` dependency.
pub use libc;

/// `if !require_postgres() { return; }` in one line: returns early from the calling test when
/// PostgreSQL is missing and `SWITCHYARD_SKIP_PG=1` is set, panics when it is missing otherwise.
/// In a test returning `Result`, give the value to return: `require_postgres_or_return!(Ok(()))`.
#[macro_export]
macro_rules! require_postgres_or_return {
    () => {
        if !$crate::require_postgres() {
            return;
        }
    };
    ($ret:expr) => {
        if !$crate::require_postgres() {
            return $ret;
        }
    };
}

/// Like [`require_postgres_or_return!`], for MariaDB: returns early when MariaDB is missing and
/// `SWITCHYARD_SKIP_MARIADB=1`, panics when it is missing otherwise.
#[macro_export]
macro_rules! require_mariadb_or_return {
    () => {
        if !$crate::require_mariadb() {
            return;
        }
    };
    ($ret:expr) => {
        if !$crate::require_mariadb() {
            return $ret;
        }
    };
}

/// Like [`require_mariadb_or_return!`], for Galera (MariaDB, `galera-4` and rsync).
#[macro_export]
macro_rules! require_galera_or_return {
    () => {
        if !$crate::require_galera() {
            return;
        }
    };
    ($ret:expr) => {
        if !$crate::require_galera() {
            return $ret;
        }
    };
}
