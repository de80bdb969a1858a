//! Health checking applied to the data plane: one task per checked server runs the check
//! kind, feeds HAProxy's rise/fall counter and applies transitions (the `up` flag the data
//! path reads, logs, `on-marked-down`/`on-marked-up` actions); live traffic can report errors
//! too (`observe layer4`, `error-limit`, `on-error`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_config::{Level, OnError};
use switchyard_health::kinds::{self, AgentAdmin, AgentOp, Target};
use switchyard_health::{check_address, run_check, CheckOutcome, CheckStatus, Transition};
use tokio::sync::watch;

use crate::state::{AdminState, Backend, KillCause, Server};

/// Starts the check tasks of every server with `check` (and `agent-check`) in `backends`.
/// The tasks end when `stop` turns true.
pub fn spawn_checks(backends: &[Arc<Backend>], stop: &watch::Sender<bool>) {
    for backend in backends {
        let servers = backend.servers.load();
        let count = servers.iter().filter(|s| s.check.enabled).count().max(1) as u32;
        for (position, server) in servers.iter().filter(|s| s.check.enabled).enumerate() {
            // Spread the first checks over one interval so a large farm is not checked in a
            // burst at start-up.
            let offset = server.check.inter * position as u32 / count;
            spawn_server_checks(backend, server, offset, stop);
        }
        for server in servers.iter().filter(|s| !s.check.enabled) {
            spawn_server_checks(backend, server, Duration::ZERO, stop);
        }
    }
}

/// Starts the active check and agent tasks one server needs (a server added at runtime too).
/// They end when the engine stops or the server is removed from its backend.
pub(crate) fn spawn_server_checks(
    backend: &Arc<Backend>,
    server: &Arc<Server>,
    offset: Duration,
    stop: &watch::Sender<bool>,
) {
    if server.check.enabled {
        tokio::spawn(check_loop(
            Arc::clone(backend),
            Arc::clone(server),
            offset,
            stop.subscribe(),
        ));
    }
    if server.check.agent.is_some() {
        tokio::spawn(agent_loop(
            Arc::clone(backend),
            Arc::clone(server),
            stop.subscribe(),
        ));
    }
    crate::resolve::spawn_resolution(backend, server, stop);
}

/// A deleted server's tasks notice they are no longer in the backend and end.
pub(crate) fn still_member(backend: &Backend, server: &Arc<Server>) -> bool {
    backend
        .servers
        .load()
        .iter()
        .any(|s| Arc::ptr_eq(s, server))
}

async fn check_loop(
    backend: Arc<Backend>,
    server: Arc<Server>,
    offset: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if sleep_or_stop(offset, &server, &mut stop).await {
        return;
    }
    while still_member(&backend, &server) {
        if server.checks_enabled.load(Ordering::Relaxed) {
            let target = check_target(&backend, &server);
            // The check's socket counts among the descriptors in use, as in HAProxy.
            let socket = crate::pool::Descriptor::open();
            let outcome = run_check(&backend.health_check, &target).await;
            drop(socket);
            apply_outcome(&backend, &server, outcome);
        }
        let delay = {
            let health = server.health();
            health.counter.next_interval(
                server.check.inter,
                server.check.fastinter,
                server.check.downinter,
            )
        };
        if sleep_or_stop(delay, &server, &mut stop).await {
            return;
        }
    }
}

/// Sleeps for `delay`, or less if an `on-error` action asks for a check now. Returns true
/// when the engine is stopping.
async fn sleep_or_stop(delay: Duration, server: &Server, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = server.recheck.notified() => false,
        _ = stop.changed() => true,
    }
}

/// Where and how long: HAProxy connects within min(`timeout connect`, `inter`) when
/// `timeout check` is set and then allows `timeout check` for the answer; without it, `inter`
/// bounds the whole check.
fn check_target(backend: &Backend, server: &Server) -> Target {
    let inter = server.check.inter;
    let (connect_timeout, timeout) = match backend.check_timeout {
        Some(check) => {
            let connect = backend.timeouts.connect.map_or(inter, |c| c.min(inter));
            (connect, connect + check)
        }
        None => (
            backend.timeouts.connect.map_or(inter, |c| c.min(inter)),
            inter,
        ),
    };
    let port = match server.check_port.load(Ordering::Relaxed) {
        0 => server
            .check
            .port
            .or(Some(server.addr().port()).filter(|p| *p != 0)),
        runtime => u16::try_from(runtime).ok(),
    };
    Target {
        addr: check_address(server.addr(), server.check.addr, port),
        timeout,
        connect_timeout,
    }
}

/// Feeds one active check result into the server's state.
fn apply_outcome(backend: &Backend, server: &Server, outcome: CheckOutcome) {
    // HAProxy counts a check's connection among the server's (`used_max`, `need_est`).
    server.pool.passing();
    let passed = outcome.status.passed();
    let (transition, changed_status) = {
        let mut health = server.health();
        let changed = health.last.as_ref().map(|l| l.status) != Some(outcome.status);
        if !passed {
            health.failed_checks += 1;
        }
        health.last = Some(outcome.clone());
        (health.counter.record(passed), changed)
    };
    if backend.log_health_checks && changed_status && transition.is_none() {
        let text = format!(
            "Health check for server {}/{} {}, reason: {}{}, check duration: {}ms, status: {}.",
            backend.name,
            server.name,
            if passed { "succeeded" } else { "failed" },
            outcome.status.description(),
            describe_details(&outcome),
            outcome.duration.as_millis(),
            server.health().counter.status_text(),
        );
        emit(backend, Level::Notice, &text);
    }
    if let Some(transition) = transition {
        apply_transition(backend, server, transition, &outcome);
    }
}

/// An error seen on live traffic (`observe layer4`): count it and apply `on-error` once
/// `error-limit` consecutive errors are reached.
pub(crate) fn report_traffic_error(backend: &Backend, server: &Server) {
    if !server.check.observe_layer4 || !server.check.enabled {
        return;
    }
    let (transition, outcome) = {
        let mut health = server.health();
        health.consecutive_errors += 1;
        if health.consecutive_errors < server.check.error_limit {
            return;
        }
        health.consecutive_errors = 0;
        let outcome = CheckOutcome::new(
            CheckStatus::Hana,
            Duration::ZERO,
            format!("{} consecutive connection errors", server.check.error_limit),
        );
        let transition = match server.check.on_error {
            OnError::FastInter => None,
            OnError::FailCheck => {
                health.failed_checks += 1;
                health.counter.record(false)
            }
            OnError::SuddenDeath => {
                health.counter.sudden_death();
                None
            }
            OnError::MarkDown => health.counter.force_down(),
        };
        health.last = Some(outcome.clone());
        (transition, outcome)
    };
    if let Some(transition) = transition {
        apply_transition(backend, server, transition, &outcome);
    }
    // Every action checks again soon (at `fastinter`) to confirm.
    server.recheck.notify_one();
}

/// A successful connection on live traffic resets the consecutive error count.
pub(crate) fn report_traffic_success(server: &Server) {
    if server.check.observe_layer4 {
        let mut health = server.health();
        health.consecutive_errors = 0;
    }
}

fn apply_transition(
    backend: &Backend,
    server: &Server,
    transition: Transition,
    outcome: &CheckOutcome,
) {
    let up = transition == Transition::Up;
    server.up.store(up, Ordering::Relaxed);
    {
        let mut health = server.health();
        let now = Instant::now();
        if up {
            let down_since = health.last_change;
            health.downtime += now.duration_since(down_since);
        } else {
            health.down_transitions += 1;
        }
        health.last_change = now;
    }
    backend.bump_generation();
    backend.changes.notify_one();

    let servers = backend.servers.load();
    let usable = |backup: bool| {
        servers
            .iter()
            .filter(|s| s.backup == backup && s.usable())
            .count()
    };
    let (active, backup) = (usable(false), usable(true));
    let queued = backend.counters.queue_current.load(Ordering::Relaxed);
    let sessions = server.counters.current.load(Ordering::Relaxed);
    let text = if up {
        format!(
            "Server {}/{} is UP, reason: {}{}, check duration: {}ms. {active} active and {backup} backup servers online. 0 sessions requeued, {queued} total in queue.",
            backend.name,
            server.name,
            outcome.status.description(),
            describe_details(outcome),
            outcome.duration.as_millis(),
        )
    } else {
        format!(
            "Server {}/{} is DOWN, reason: {}{}, check duration: {}ms. {active} active and {backup} backup servers left. {sessions} sessions active, 0 requeued, {queued} remaining in queue.",
            backend.name,
            server.name,
            outcome.status.description(),
            describe_details(outcome),
            outcome.duration.as_millis(),
        )
    };
    emit(
        backend,
        if up { Level::Notice } else { Level::Alert },
        &text,
    );
    if !up && active == 0 && backup == 0 {
        emit(
            backend,
            Level::Emerg,
            &format!("backend {} has no server available!", backend.name),
        );
    }

    if !up && server.check.shutdown_sessions_on_down {
        server.kill_sessions(KillCause::Down);
    }
    if up && !server.backup && server.check.shutdown_backup_sessions_on_up {
        for other in servers.iter().filter(|s| s.backup) {
            other.kill_sessions(KillCause::Up);
        }
    }
}

/// `, code: 503, info: "..."` as HAProxy appends to the reason.
fn describe_details(outcome: &CheckOutcome) -> String {
    let mut text = String::new();
    if let Some(code) = outcome.code {
        text.push_str(&format!(", code: {code}"));
    }
    if !outcome.info.is_empty() {
        text.push_str(&format!(", info: \"{}\"", outcome.info));
    }
    text
}

/// State changes go to the backend's log targets and, like HAProxy's warnings, to stderr.
pub(crate) fn emit(backend: &Backend, level: Level, text: &str) {
    let tag = match level {
        Level::Emerg | Level::Alert => "ALERT",
        Level::Notice => "NOTICE",
        _ => "WARNING",
    };
    eprintln!("[{tag}]    ({}) : {text}", std::process::id());
    if let Some(logger) = &backend.logger {
        logger.log(level, text);
    }
}

async fn agent_loop(backend: Arc<Backend>, server: Arc<Server>, mut stop: watch::Receiver<bool>) {
    let Some(agent) = server.check.agent.clone() else {
        return;
    };
    while still_member(&backend, &server) {
        if !server.agent_enabled.load(Ordering::Relaxed) {
            if sleep_or_stop(agent.inter, &server, &mut stop).await {
                return;
            }
            continue;
        }
        let port = match server.check_port.load(Ordering::Relaxed) {
            0 => agent.port,
            runtime => u16::try_from(runtime).unwrap_or(agent.port),
        };
        let target = Target {
            addr: check_address(server.addr(), agent.addr, Some(port)),
            timeout: backend.check_timeout.unwrap_or(agent.inter),
            connect_timeout: backend
                .timeouts
                .connect
                .map_or(agent.inter, |c| c.min(agent.inter)),
        };
        let socket = crate::pool::Descriptor::open();
        let reply = kinds::run_agent(&target, agent.send.as_deref()).await;
        drop(socket);
        server.pool.passing();
        apply_agent(&backend, &server, reply);
        if sleep_or_stop(agent.inter, &server, &mut stop).await {
            return;
        }
    }
}

/// Applies an agent's answer: weight, admin state and operational state, as HAProxy does.
fn apply_agent(backend: &Backend, server: &Server, reply: kinds::AgentReply) {
    server.health().last_agent = Some(reply.outcome.clone());
    if let Some(percent) = reply.weight_percent {
        let weight = (server.uweight.load(Ordering::Relaxed) * percent / 100).min(256);
        if server.weight.swap(weight, Ordering::Relaxed) != weight {
            backend.bump_generation();
        }
    }
    if let Some(admin) = reply.admin {
        let state = match admin {
            AgentAdmin::Ready => AdminState::Ready,
            AgentAdmin::Drain => AdminState::Drain,
            AgentAdmin::Maint => AdminState::Maint,
        };
        if server.set_admin(state) {
            backend.bump_generation();
        }
    }
    if let Some(op) = reply.operational {
        let transition = {
            let mut health = server.health();
            match op {
                AgentOp::Up => health.counter.force_up(),
                AgentOp::Down | AgentOp::Failed | AgentOp::Stopped => health.counter.force_down(),
            }
        };
        if let Some(transition) = transition {
            apply_transition(backend, server, transition, &reply.outcome);
        }
    }
}
