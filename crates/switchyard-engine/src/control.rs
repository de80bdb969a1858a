//! Runtime changes the control plane (the Runtime API) makes while traffic flows: server admin
//! states, weights, addresses, limits, dynamic servers, killing sessions.
//!
//! Every operation validates first and changes nothing on error, and reports errors with
//! HAProxy's wording, since operators' scripts match on it.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use switchyard_config::{self as config, Balance, HashMethod};

use crate::health;
use crate::state::{AdminState, Backend, KillCause, Server};
use crate::Runtime;

/// A failed runtime change, carrying HAProxy's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ControlError(pub String);

fn err<T>(message: &str) -> Result<T, ControlError> {
    Err(ControlError(message.to_string()))
}

/// A weight as the Runtime API takes it: absolute, or relative to the configured weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Absolute(u32),
    Percent(u32),
}

impl Runtime {
    pub fn backend(&self, name: &str) -> Result<&Arc<Backend>, ControlError> {
        self.backends
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| ControlError("No such backend.".into()))
    }

    /// Finds `backend/server`.
    pub fn server(
        &self,
        backend: &str,
        server: &str,
    ) -> Result<(&Arc<Backend>, Arc<Server>), ControlError> {
        let backend = self.backend(backend)?;
        let found = backend
            .servers
            .load()
            .iter()
            .find(|s| s.name == server)
            .cloned()
            .ok_or_else(|| ControlError("No such server.".into()))?;
        Ok((backend, found))
    }

    /// `set server B/S state ready|drain|maint`, `enable|disable server B/S`.
    pub fn set_admin_state(
        &self,
        backend: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), ControlError> {
        let (backend, server) = self.server(backend, server)?;
        if server.set_admin(state) {
            server.health().last_change = Instant::now();
            backend.bump_generation();
        }
        Ok(())
    }

    /// `set weight B/S N[%]` / `set server B/S weight N[%]`. A static algorithm (`static-rr`,
    /// map-based hashing) only switches a server fully on or off, as in HAProxy.
    ///
    /// `N%` and the static rule refer to the weight the server was built with (HAProxy's
    /// `iweight`), never to the last weight set: otherwise a static server set to 0 could
    /// not be given its weight back.
    pub fn set_weight(
        &self,
        backend: &str,
        server: &str,
        weight: Weight,
    ) -> Result<(), ControlError> {
        let (backend, server) = self.server(backend, server)?;
        let configured = server.initial.weight;
        let new = match weight {
            Weight::Absolute(n) if n <= 256 => n,
            // As HAProxy: the percentage is capped at 25600, the result at 256.
            Weight::Percent(p) => {
                (u64::from(configured) * u64::from(p.min(25_600)) / 100).min(256) as u32
            }
            Weight::Absolute(_) => return err("Integer value out of range [0..256]."),
        };
        if !is_dynamic(backend) && new != 0 && new != configured {
            return err(
                "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.",
            );
        }
        // The new user weight either way, as HAProxy's `uweight` (the Runtime API turns `N%`
        // into an absolute weight before calling this).
        server.uweight.store(new, Ordering::Relaxed);
        server.weight.store(new, Ordering::Relaxed);
        backend.bump_generation();
        Ok(())
    }

    /// `get weight B/S`: "CURRENT (initial CONFIGURED)".
    pub fn get_weight(&self, backend: &str, server: &str) -> Result<String, ControlError> {
        let (_, server) = self.server(backend, server)?;
        Ok(format!(
            "{} (initial {})",
            server.weight.load(Ordering::Relaxed),
            server.initial.weight
        ))
    }

    /// `set server B/S addr IP [port N]`: new sessions go to the new address; established
    /// ones stay where they are.
    pub fn set_addr(
        &self,
        backend: &str,
        server: &str,
        ip: IpAddr,
        port: Option<u16>,
    ) -> Result<String, ControlError> {
        let (backend, server) = self.server(backend, server)?;
        let old = server.addr();
        let new = SocketAddr::new(ip, port.unwrap_or(old.port()));
        if new != old {
            server.move_to(new);
        }
        backend.bump_generation();
        let mut reply = String::new();
        if old.ip() != new.ip() {
            reply.push_str(&format!("IP changed from '{}' to '{}'", old.ip(), new.ip()));
        }
        if old.port() != new.port() {
            if !reply.is_empty() {
                reply.push_str(", ");
            }
            reply.push_str(&format!(
                "port changed from '{}' to '{}'",
                old.port(),
                new.port()
            ));
        }
        if reply.is_empty() {
            reply.push_str("no need to change the addr");
        }
        reply.push_str(" by 'stats socket command'");
        Ok(reply)
    }

    /// `enable|disable health B/S`: a server whose checks are disabled counts as UP.
    pub fn set_checks_enabled(
        &self,
        backend: &str,
        server: &str,
        enabled: bool,
    ) -> Result<(), ControlError> {
        let (backend, server) = self.server(backend, server)?;
        if !server.check.enabled {
            return err("Health checks are not configured on this server, cannot enable.");
        }
        server.checks_enabled.store(enabled, Ordering::Relaxed);
        if !enabled {
            server.up.store(true, Ordering::Relaxed);
        } else {
            server
                .up
                .store(server.health().counter.is_up(), Ordering::Relaxed);
            server.recheck.notify_one();
        }
        backend.bump_generation();
        Ok(())
    }

    /// `enable|disable agent B/S`.
    pub fn set_agent_enabled(
        &self,
        backend: &str,
        server: &str,
        enabled: bool,
    ) -> Result<(), ControlError> {
        let (_, server) = self.server(backend, server)?;
        if server.check.agent.is_none() {
            return err("Agent was not configured on this server, cannot enable.");
        }
        server.agent_enabled.store(enabled, Ordering::Relaxed);
        Ok(())
    }

    /// `set server B/S check-port N`.
    pub fn set_check_port(
        &self,
        backend: &str,
        server: &str,
        port: u16,
    ) -> Result<(), ControlError> {
        let (_, server) = self.server(backend, server)?;
        if !server.check.enabled {
            // HAProxy's wording, without its final period.
            return err("health checks are not enabled on this server");
        }
        server.check_port.store(u32::from(port), Ordering::Relaxed);
        server.recheck.notify_one();
        Ok(())
    }

    /// `set server B/S agent up|down`: forces the agent's verdict until its next answer.
    pub fn set_agent_state(
        &self,
        backend: &str,
        server: &str,
        up: bool,
    ) -> Result<(), ControlError> {
        let (backend, server) = self.server(backend, server)?;
        if server.check.agent.is_none() {
            return err("agent checks are not enabled on this server.");
        }
        {
            let mut health = server.health();
            if up {
                health.counter.force_up();
            } else {
                health.counter.force_down();
            }
        }
        server.up.store(up, Ordering::Relaxed);
        backend.bump_generation();
        Ok(())
    }

    /// `set maxconn server B/S N` (0 = unlimited).
    pub fn set_server_maxconn(
        &self,
        backend: &str,
        server: &str,
        maxconn: u32,
    ) -> Result<(), ControlError> {
        let (backend, server) = self.server(backend, server)?;
        server.maxconn.store(maxconn, Ordering::Relaxed);
        // A higher limit may let queued sessions through.
        backend.wake_queue();
        Ok(())
    }

    /// `set maxconn frontend F N`: more slots let waiting connections in at once; fewer
    /// take effect as sessions end (none is closed), as in HAProxy.
    pub fn set_frontend_maxconn(&self, frontend: &str, maxconn: i64) -> Result<(), ControlError> {
        let frontend = self
            .frontends
            .iter()
            .find(|f| f.name == frontend)
            .ok_or_else(|| ControlError("No such frontend.".into()))?;
        let Ok(maxconn) = u32::try_from(maxconn) else {
            return err("Value out of range.");
        };
        resize(&frontend.slots, &frontend.maxconn, maxconn);
        Ok(())
    }

    /// `set maxconn global N`: up to the configured limit; 0 or less restores it.
    pub fn set_global_maxconn(&self, maxconn: i64) -> Result<(), ControlError> {
        let hard = self.process.hard_maxconn;
        if maxconn > i64::from(hard) {
            return err("Value out of range.");
        }
        let maxconn = u32::try_from(maxconn)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(hard);
        resize(&self.process.slots, &self.process.maxconn, maxconn);
        Ok(())
    }

    /// `shutdown sessions server B/S`.
    pub fn shutdown_server_sessions(
        &self,
        backend: &str,
        server: &str,
    ) -> Result<(), ControlError> {
        let (_, server) = self.server(backend, server)?;
        server.kill_sessions(KillCause::Admin);
        Ok(())
    }

    /// `shutdown session ID`.
    pub fn shutdown_session(&self, id: u64) -> Result<(), ControlError> {
        let session = self
            .process
            .sessions
            .get(id)
            .ok_or_else(|| ControlError("No such session (use 'show sess').".into()))?;
        // The order stays set, so a session between two awaits still sees it.
        session.kill.kill(crate::state::KillCause::Admin);
        Ok(())
    }

    /// `add server B/S ADDR[:PORT] [settings]`: the server starts in maintenance, as in
    /// HAProxy, and takes traffic once set `ready`. Its checks start right away. `spec` is
    /// the command's text after the server name, kept so the server can be re-created from
    /// the runtime state file.
    pub async fn add_server(
        &self,
        backend: &str,
        server: config::Server,
        spec: &str,
    ) -> Result<(), ControlError> {
        let backend = self.backend(backend)?;
        if !is_dynamic(backend) {
            return err("Backend must use a dynamic load balancing to support dynamic servers.");
        }
        let current = backend.servers.load_full();
        if current.iter().any(|s| s.name == server.name) {
            return err("Already exists a server with the same name in backend.");
        }
        let mut server = server;
        if server.id == 0 {
            server.id = current.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        } else if current.iter().any(|s| s.id == server.id) {
            return err("this id is already used by another server.");
        }
        let origin = crate::state::ServerOrigin::Runtime {
            spec: spec.to_string(),
        };
        let built = crate::new_server(&server, origin, &self.resolvers, &self.process.sessions)
            .await
            .map_err(|e| ControlError(format!("{e:#}")))?;
        built
            .admin
            .store(AdminState::Maint as u8, Ordering::Relaxed);
        let built = Arc::new(built);
        // Publish with compare-and-swap: a concurrent add/del must not be lost.
        let mut expected = current;
        loop {
            let mut next = (*expected).clone();
            if next.iter().any(|s| s.name == built.name) {
                return err("Already exists a server with the same name in backend.");
            }
            next.push(Arc::clone(&built));
            let previous = backend.servers.compare_and_swap(&expected, Arc::new(next));
            if Arc::ptr_eq(&previous, &expected) {
                break;
            }
            expected = arc_swap::Guard::into_inner(previous);
        }
        backend.bump_generation();
        health::spawn_server_checks(backend, &built, std::time::Duration::ZERO, &self.stop);
        Ok(())
    }

    /// `del server B/S`: only a server in maintenance with no session and nothing queued.
    pub fn del_server(&self, backend: &str, server: &str) -> Result<(), ControlError> {
        let backend = self.backend(backend)?;
        loop {
            let current = backend.servers.load_full();
            let Some(target) = current.iter().find(|s| s.name == server) else {
                return err("No such server.");
            };
            if target.admin_state() != AdminState::Maint {
                return err("Only servers in maintenance mode can be deleted.");
            }
            if target.counters.current.load(Ordering::Relaxed) > 0 {
                return err("Server still has connections attached to it, cannot remove it.");
            }
            let next: Vec<Arc<Server>> = current
                .iter()
                .filter(|s| s.name != server)
                .cloned()
                .collect();
            let previous = backend.servers.compare_and_swap(&current, Arc::new(next));
            if Arc::ptr_eq(&previous, &current) {
                backend.bump_generation();
                target.pool.close_idle();
                return Ok(());
            }
        }
    }
}

/// Changes the number of slots of a connection limit. Slots in use cannot be taken back:
/// a task waits for them to be released and retires them (it queues ahead of new
/// connections, so nothing is accepted above the new limit meanwhile).
fn resize(slots: &Arc<tokio::sync::Semaphore>, size: &AtomicU32, to: u32) {
    let from = size.swap(to, Ordering::AcqRel);
    if to > from {
        slots.add_permits((to - from) as usize);
    } else if from > to {
        let surplus = (from - to) as usize;
        let retired = slots.forget_permits(surplus);
        if retired < surplus {
            let slots = Arc::clone(slots);
            let owed = u32::try_from(surplus - retired).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(permits) = slots.acquire_many_owned(owed).await {
                    permits.forget();
                }
            });
        }
    }
}

/// HAProxy's "dynamic" algorithms: those whose weights can change at runtime, and the only
/// ones that accept dynamic servers.
fn is_dynamic(backend: &Backend) -> bool {
    accepts_dynamic_servers(&backend.balance, backend.hash_method)
}

pub(crate) fn accepts_dynamic_servers(balance: &Balance, hash_method: HashMethod) -> bool {
    match balance {
        Balance::StaticRr => false,
        Balance::Source
        | Balance::Uri
        | Balance::UrlParam(_)
        | Balance::Hdr(_)
        | Balance::RdpCookie(_) => hash_method == HashMethod::Consistent,
        _ => true,
    }
}
