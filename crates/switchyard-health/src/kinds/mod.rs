//! One module per check kind; each is a small state machine over one connection.
//!
//! Every kind runs over a single tokio `TcpStream` (the `tcp-check` kind may reconnect with
//! `connect port N`), reads into a buffer bounded like HAProxy's (16 KiB, 1 KiB for agents),
//! and is bounded in time by [`Target`]: the connect by `connect_timeout`, the whole check by
//! `timeout`. Nothing in here panics on what a server sends.

pub mod agent;
mod conn;
pub mod http;
pub mod mysql;
pub mod pgsql;
pub mod tcp;
pub mod tcpcheck;

#[cfg(test)]
mod testutil;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchyard_config::HealthCheck;

use crate::status::{CheckOutcome, CheckStatus};

pub use agent::{parse_agent_line, AgentAdmin, AgentLine, AgentOp, AgentReply};

/// Where a check connects and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The whole check, connect included, counted from its start. HAProxy allows
    /// min(`timeout connect`, `inter`) for the connect and then `timeout check` for the answer;
    /// the scheduler passes their sum here (or `inter` without `timeout check`).
    pub timeout: Duration,
    /// The connect alone (each connect of a `tcp-check` ruleset), never beyond `timeout`.
    pub connect_timeout: Duration,
}

/// Runs one check of `check` against `target`: the HAProxy kinds. Database-role checks belong to
/// the scheduler (crate `switchyard-dbcheck`) and are refused here.
pub async fn run(check: &HealthCheck, target: &Target) -> CheckOutcome {
    match check {
        HealthCheck::Tcp => tcp::check(target).await,
        HealthCheck::Http(http) => http::check(http, target).await,
        HealthCheck::Mysql { user, post_41 } => {
            mysql::check(user.as_deref(), *post_41, target).await
        }
        HealthCheck::Pgsql { user } => pgsql::check(user, target).await,
        HealthCheck::TcpCheck(rules) => tcpcheck::check(rules, target).await,
        HealthCheck::Database(_) => CheckOutcome::new(
            CheckStatus::L7Rsp,
            Duration::ZERO,
            "database checks are run by the scheduler",
        ),
    }
}

/// Runs one agent check (`agent-check`): see [`agent`].
pub async fn run_agent(target: &Target, send: Option<&str>) -> AgentReply {
    agent::check(target, send).await
}

/// The clock of one check run: its start (for `duration`) and its deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub start: Instant,
    pub deadline: Instant,
}

impl Clock {
    pub fn start(target: &Target) -> Clock {
        let start = Instant::now();
        Clock {
            start,
            deadline: start + target.timeout,
        }
    }

    /// Time left before the deadline (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub fn outcome(&self, status: CheckStatus, info: impl Into<String>) -> CheckOutcome {
        CheckOutcome::new(status, self.start.elapsed(), info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::{DatabaseCheck, DatabaseEngine, DatabaseRole};

    #[tokio::test]
    async fn dispatch() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = testutil::target_for(listener.local_addr().unwrap());
        assert_eq!(
            run(&HealthCheck::Tcp, &target).await.status,
            CheckStatus::L4Ok
        );
        assert_eq!(
            run(&HealthCheck::TcpCheck(Vec::new()), &target)
                .await
                .status,
            CheckStatus::L4Ok
        );
        let database = HealthCheck::Database(DatabaseCheck {
            engine: DatabaseEngine::Postgres,
            user: "check".into(),
            password: None,
            database: None,
            role: DatabaseRole::Any,
            max_lag: None,
            allow_donor: false,
        });
        let outcome = run(&database, &target).await;
        assert_eq!(outcome.status, CheckStatus::L7Rsp);
        assert_eq!(outcome.info, "database checks are run by the scheduler");
        let refused = testutil::closed_port_target();
        let reply = run_agent(&refused, None).await;
        assert_eq!(reply.outcome.status, CheckStatus::L4Con);
    }
}
