//! Runtime state that outlives the process: what operators changed through the Runtime API
//! (added and deleted servers, admin states, weights, addresses, limits, disabled checks)
//! and which servers checks last saw DOWN.
//!
//! The state is kept as a *difference from the configuration*, keyed by backend and server
//! name, so that it can be re-applied to whatever a reload or restart builds. Each change
//! to a configuration server remembers a fingerprint of the `server` line it was made to:
//! when the operator has since edited that line, the configuration is the newer intent and
//! wins (the change is dropped with a notice). HAProxy's own `server-state-file` works on
//! the same "by name" principle but needs a script to dump it before each reload and cannot
//! re-create dynamic servers; this file is written by Switchyard after every change.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchyard_config as config;
use switchyard_health::HealthCounter;

use crate::state::{AdminState, Backend, Server, ServerOrigin};
use crate::Runtime;

/// Format version written in the file; a file with another version is refused.
pub const STATE_VERSION: u32 = 1;

/// Everything to restore, per backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeState {
    pub version: u32,
    #[serde(default)]
    pub backends: BTreeMap<String, BackendState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendState {
    /// Servers with something to restore, in the backend's order (dynamic servers are
    /// re-added in this order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerState>,
    /// Configuration servers deleted at runtime: name → fingerprint of the deleted line.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted: BTreeMap<String, String>,
}

impl BackendState {
    fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.deleted.is_empty()
    }
}

/// One server's changes. Fields left out are as the configuration (or `add server`) says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    pub name: String,
    /// A configuration server: fingerprint of the `server` line the changes were made to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// A dynamic server: the `add server` arguments after the name, as typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<String>,
    /// A dynamic server's id, so it keeps it across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    /// User weight (`set weight N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Effective weight when it differs from the user weight (`set weight N%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxconn: Option<u32>,
    /// `false` after `disable health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<bool>,
    /// `false` after `disable agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<bool>,
    /// Checks last saw it DOWN: it restarts DOWN and needs `rise` good checks, as HAProxy
    /// does with a loaded server state, rather than taking traffic it may fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

impl From<AdminState> for Admin {
    fn from(state: AdminState) -> Self {
        match state {
            AdminState::Ready => Admin::Ready,
            AdminState::Drain => Admin::Drain,
            AdminState::Maint => Admin::Maint,
        }
    }
}

impl From<Admin> for AdminState {
    fn from(state: Admin) -> Self {
        match state {
            Admin::Ready => AdminState::Ready,
            Admin::Drain => AdminState::Drain,
            Admin::Maint => AdminState::Maint,
        }
    }
}

/// Identifies a `server` line's definition, ignoring where it sits in the file and its
/// automatically assigned id (inserting a line above must not discard runtime changes).
/// Built from the model's `Debug` text: a new Switchyard version that changes it only makes
/// the configuration win once, which is the safe side.
pub fn fingerprint(server: &config::Server) -> u64 {
    let mut definition = server.clone();
    definition.span = config::Span {
        file: "".into(),
        line: 0,
    };
    definition.id = 0;
    let mut hasher = Fnv64::default();
    format!("{definition:?}").hash(&mut hasher);
    hasher.finish()
}

fn hex(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Runtime {
    /// The runtime state as a difference from the configuration.
    pub fn capture_state(&self) -> RuntimeState {
        let mut state = RuntimeState {
            version: STATE_VERSION,
            backends: BTreeMap::new(),
        };
        for backend in &self.backends {
            let servers = backend.servers.load();
            let mut saved = BackendState::default();
            for (name, fingerprint) in &backend.configured {
                let present = servers
                    .iter()
                    .any(|s| s.name == *name && matches!(s.origin, ServerOrigin::Config { .. }));
                if !present {
                    saved.deleted.insert(name.clone(), hex(*fingerprint));
                }
            }
            saved
                .servers
                .extend(servers.iter().filter_map(|s| capture_server(s)));
            if !saved.is_empty() {
                state.backends.insert(backend.name.clone(), saved);
            }
        }
        state
    }

    /// Applies saved state to the servers that exist now and returns notices about what
    /// could not be applied. Dynamic servers must have been re-added first (the caller owns
    /// the `add server` grammar); configuration servers deleted at runtime are deleted again.
    pub fn apply_state(&self, state: &RuntimeState) -> Vec<String> {
        let mut notices = Vec::new();
        for (name, saved) in &state.backends {
            let Ok(backend) = self.backend(name) else {
                notices.push(format!(
                    "backend '{name}' is no longer configured: its runtime changes are dropped"
                ));
                continue;
            };
            for (server, fingerprint) in &saved.deleted {
                match backend.configured.iter().find(|(n, _)| n == server) {
                    Some((_, now)) if hex(*now) == *fingerprint => remove_server(backend, server),
                    Some(_) => notices.push(format!(
                        "server '{name}/{server}' was deleted at runtime, but its configuration \
                         changed since: it is kept"
                    )),
                    None => {}
                }
            }
            for server_state in &saved.servers {
                let label = format!("{name}/{}", server_state.name);
                let Ok((_, server)) = self.server(name, &server_state.name) else {
                    notices.push(format!(
                        "server '{label}' no longer exists: its runtime changes are dropped"
                    ));
                    continue;
                };
                match (&server.origin, &server_state.config) {
                    (ServerOrigin::Config { fingerprint }, Some(saved))
                        if hex(*fingerprint) == *saved => {}
                    (ServerOrigin::Config { .. }, Some(_)) => {
                        notices.push(format!(
                            "server '{label}' changed in the configuration since its runtime \
                             changes: the configuration wins"
                        ));
                        continue;
                    }
                    (ServerOrigin::Runtime { .. }, None) => {}
                    (ServerOrigin::Config { .. }, None) => {
                        notices.push(format!(
                            "server '{label}' added at runtime is now in the configuration: \
                             the configuration wins"
                        ));
                        continue;
                    }
                    (ServerOrigin::Runtime { .. }, Some(_)) => {
                        notices.push(format!(
                            "server '{label}' is no longer in the configuration: its runtime \
                             changes are dropped"
                        ));
                        continue;
                    }
                }
                apply_server(&server, server_state);
            }
            backend.bump_generation();
        }
        notices
    }
}

fn capture_server(server: &Server) -> Option<ServerState> {
    let initial = server.initial;
    let dynamic = matches!(server.origin, ServerOrigin::Runtime { .. });
    let mut saved = ServerState {
        name: server.name.clone(),
        ..ServerState::default()
    };
    match &server.origin {
        ServerOrigin::Config { fingerprint } => saved.config = Some(hex(*fingerprint)),
        ServerOrigin::Runtime { spec } => {
            saved.added = Some(spec.clone());
            saved.id = Some(server.id);
        }
    }
    let admin = server.admin_state();
    // A dynamic server is re-created in maintenance: its admin state is always saved.
    if dynamic || admin != initial.admin {
        saved.admin = Some(admin.into());
    }
    let uweight = server.uweight.load(Ordering::Relaxed);
    let weight = server.weight.load(Ordering::Relaxed);
    if uweight != initial.weight {
        saved.weight = Some(uweight);
    }
    if weight != uweight {
        saved.effective_weight = Some(weight);
    }
    let addr = server.addr();
    if addr != initial.addr {
        saved.addr = Some(addr);
    }
    let maxconn = server.maxconn.load(Ordering::Relaxed);
    if maxconn != initial.maxconn {
        saved.maxconn = Some(maxconn);
    }
    let checks_enabled = server.checks_enabled.load(Ordering::Relaxed);
    if !checks_enabled {
        saved.health_checks = Some(false);
    }
    if !server.agent_enabled.load(Ordering::Relaxed) {
        saved.agent = Some(false);
    }
    if server.check.enabled && checks_enabled && !server.health().counter.is_up() {
        saved.down = Some(true);
    }
    let changed = saved.admin.is_some()
        || saved.weight.is_some()
        || saved.effective_weight.is_some()
        || saved.addr.is_some()
        || saved.maxconn.is_some()
        || saved.health_checks.is_some()
        || saved.agent.is_some()
        || saved.down.is_some();
    (dynamic || changed).then_some(saved)
}

fn apply_server(server: &Server, saved: &ServerState) {
    if let Some(admin) = saved.admin {
        server
            .admin
            .store(AdminState::from(admin) as u8, Ordering::Relaxed);
    }
    if let Some(weight) = saved.weight {
        server.uweight.store(weight.min(256), Ordering::Relaxed);
        server.weight.store(weight.min(256), Ordering::Relaxed);
    }
    if let Some(weight) = saved.effective_weight {
        server.weight.store(weight.min(256), Ordering::Relaxed);
    }
    if let Some(addr) = saved.addr {
        server.addr.store(Arc::new(addr));
    }
    if let Some(maxconn) = saved.maxconn {
        server.maxconn.store(maxconn, Ordering::Relaxed);
    }
    if let Some(enabled) = saved.agent {
        server.agent_enabled.store(enabled, Ordering::Relaxed);
    }
    if saved.down == Some(true) && server.check.enabled {
        let mut health = server.health();
        health.counter = HealthCounter::new_down(server.check.rise, server.check.fall);
        server.up.store(false, Ordering::Relaxed);
    }
    if saved.health_checks == Some(false) && server.check.enabled {
        server.checks_enabled.store(false, Ordering::Relaxed);
        // A server whose checks are disabled counts as UP, as `disable health` does.
        server.up.store(true, Ordering::Relaxed);
    }
}

/// Removes a configuration server at startup or reload, before it can carry traffic.
fn remove_server(backend: &Backend, name: &str) {
    backend.servers.rcu(|servers| {
        servers
            .iter()
            .filter(|s| s.name != name)
            .cloned()
            .collect::<Vec<_>>()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(line: u32, name: &str) -> config::Server {
        config::Server::new(
            config::Span {
                file: "a.cfg".into(),
                line,
            },
            name.into(),
            config::Host::Ip("127.0.0.1".parse().unwrap()),
            Some(5432),
        )
    }

    #[test]
    fn fingerprint_ignores_position_and_automatic_id_but_not_settings() {
        let a = server(10, "db1");
        let mut moved = server(42, "db1");
        moved.id = 7;
        assert_eq!(fingerprint(&a), fingerprint(&moved));
        let mut heavier = server(10, "db1");
        heavier.weight = 50;
        assert_ne!(fingerprint(&a), fingerprint(&heavier));
        let mut elsewhere = server(10, "db1");
        elsewhere.port = Some(5433);
        assert_ne!(fingerprint(&a), fingerprint(&elsewhere));
    }

    #[test]
    fn state_round_trips_through_json_and_omits_unchanged_fields() {
        let state = RuntimeState {
            version: STATE_VERSION,
            backends: BTreeMap::from([(
                "pg".to_string(),
                BackendState {
                    servers: vec![ServerState {
                        name: "db1".into(),
                        config: Some(hex(1)),
                        admin: Some(Admin::Maint),
                        ..ServerState::default()
                    }],
                    deleted: BTreeMap::from([("db3".to_string(), hex(3))]),
                },
            )]),
        };
        let text = serde_json::to_string(&state).unwrap();
        assert!(!text.contains("weight"), "{text}");
        assert!(text.contains(r#""admin":"maint""#), "{text}");
        let back: RuntimeState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
    }
}
