//! Choosing a server for a session: tiers (active, then backup), connection slots under
//! `maxconn`, and the backend queue with `timeout queue`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use switchyard_balance::{PickRequest, ServerView};

use crate::state::{Backend, Server};
use crate::stick::StickKey;

/// A connection slot on a server, released when dropped.
#[derive(Debug)]
pub struct Lease {
    pub server: Arc<Server>,
    backend: Arc<Backend>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.server.release_slot();
        // A slot is free: the oldest queued session may take it.
        self.backend.slot_freed.notify_one();
    }
}

/// What the request tells the selection beyond the backend's state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hint<'a> {
    /// Client address: `balance source`.
    pub client: Option<IpAddr>,
    /// Request data hashed by `balance uri|url_param|hdr` (HTTP).
    pub key: Option<&'a [u8]>,
    /// The server a persistence cookie names: taken first while it is usable.
    pub prefer: Option<&'a Arc<Server>>,
    /// Looked up in the backend's stick table (`stick on|match`).
    pub stick_match: Option<&'a StickKey>,
    /// Stored in the stick table with the server picked (`stick on|store-request`).
    pub stick_store: Option<&'a StickKey>,
}

/// Why no server could be assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// No server is usable (all down, in maintenance, or none configured).
    Unavailable,
    /// Servers exist but stayed full for the whole `timeout queue`.
    QueueTimeout,
    /// The queue is at its bound (`maxqueue`).
    QueueFull,
}

/// Outcome of one selection attempt without waiting.
enum Attempt {
    Leased(Lease),
    /// Usable servers exist but all are at `maxconn`.
    Full,
    Unavailable,
}

/// Picks a server and takes a slot on it, waiting in the backend queue while every usable
/// server is full. `avoid` is a server not to pick again (redispatch after a failure) unless
/// it is the only one. Returns the lease and the time spent queued.
pub async fn assign(
    backend: &Arc<Backend>,
    hint: Hint<'_>,
    avoid: Option<&Arc<Server>>,
    queue_timeout: Option<Duration>,
) -> Result<(Lease, Duration), (NoServer, Duration)> {
    // Sessions already waiting have priority: a newcomer queues behind them.
    if backend.counters.queue_current.load(Ordering::Relaxed) == 0 {
        match attempt(backend, hint, avoid) {
            Attempt::Leased(lease) => return Ok((assigned(backend, lease), Duration::ZERO)),
            Attempt::Unavailable => return Err((NoServer::Unavailable, Duration::ZERO)),
            Attempt::Full => {}
        }
    }
    if let Some(limit) = backend.queue_limit {
        if backend.counters.queue_current.load(Ordering::Relaxed) >= limit {
            return Err((NoServer::QueueFull, Duration::ZERO));
        }
    }
    // The queue time starts here: the attempt above took no time worth a clock read.
    let started = Instant::now();
    let deadline = queue_timeout.map(|t| tokio::time::Instant::from_std(started + t));
    backend.counters.queue_entered();
    let _leave = QueueGuard(backend);
    loop {
        let notified = backend.slot_freed.notified();
        tokio::pin!(notified);
        // Register before trying, so a slot freed between the attempt and the wait is seen.
        notified.as_mut().enable();
        match attempt(backend, hint, avoid) {
            Attempt::Leased(lease) => return Ok((assigned(backend, lease), started.elapsed())),
            Attempt::Unavailable => return Err((NoServer::Unavailable, started.elapsed())),
            Attempt::Full => {}
        }
        match deadline {
            Some(deadline) => {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Err((NoServer::QueueTimeout, started.elapsed()));
                }
            }
            None => notified.await,
        }
    }
}

/// HAProxy's `be_set_sess_last`: the backend's `lastsess` is when it last assigned a server.
fn assigned(backend: &Backend, lease: Lease) -> Lease {
    backend.counters.last_session.record(crate::rate::now_ms());
    lease
}

struct QueueGuard<'a>(&'a Backend);

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.0.counters.queue_left();
    }
}

fn attempt(backend: &Arc<Backend>, hint: Hint<'_>, avoid: Option<&Arc<Server>>) -> Attempt {
    let servers = backend.servers.load();
    // Persistence first: a cookie's server, else the stick table's, while that server is
    // usable (and not the server a redispatch is moving away from).
    let table = backend.stick.as_ref();
    let remembered = match hint.prefer {
        Some(server) => Some(Arc::clone(server)),
        None => table
            .zip(hint.stick_match)
            .and_then(|(table, key)| table.lookup(key))
            .and_then(|name| servers.iter().find(|s| s.name == name).cloned()),
    };
    let usable = remembered.filter(|s| s.usable() && !avoid.is_some_and(|a| Arc::ptr_eq(s, a)));
    if let Some(server) = usable {
        if server.try_take_slot() {
            return Attempt::Leased(Lease {
                server,
                backend: Arc::clone(backend),
            });
        }
        return Attempt::Full;
    }
    let picked = pick(backend, &servers, hint, avoid);
    if let (Attempt::Leased(lease), Some((table, key))) = (&picked, table.zip(hint.stick_store)) {
        table.store(key, &lease.server.name);
    }
    picked
}

fn pick(
    backend: &Arc<Backend>,
    servers: &[Arc<Server>],
    hint: Hint<'_>,
    avoid: Option<&Arc<Server>>,
) -> Attempt {
    // The active tier serves while any active server is usable; backups only when none is.
    let any_active = servers.iter().any(|s| !s.backup && s.usable());
    // On the stack for farms of up to 16 servers: a pick runs once per connection (and per
    // HTTP request), and two heap vectors per pick showed in its profile.
    let tier: SmallVec<[&Arc<Server>; 16]> = if any_active {
        servers.iter().filter(|s| !s.backup).collect()
    } else if backend.allbackups {
        servers.iter().filter(|s| s.backup).collect()
    } else {
        // Without `option allbackups` only the first usable backup takes the traffic.
        servers
            .iter()
            .filter(|s| s.backup && s.usable())
            .take(1)
            .collect()
    };
    if !tier.iter().any(|s| s.usable()) {
        return Attempt::Unavailable;
    }
    let generation =
        backend.generation.load(Ordering::Relaxed) + if any_active { 0 } else { 1 << 63 };
    // A few tries: a server may fill up between the pick and taking its slot.
    for _ in 0..4 {
        let avoid_ok = avoid.filter(|a| {
            tier.iter()
                .filter(|s| s.usable() && s.has_slot())
                .any(|s| !Arc::ptr_eq(s, a))
        });
        let views: SmallVec<[ServerView; 16]> = tier
            .iter()
            .map(|s| ServerView {
                weight: s.weight.load(Ordering::Relaxed),
                conns: s.counters.current.load(Ordering::Relaxed),
                eligible: s.usable()
                    && s.has_slot()
                    && !avoid_ok.is_some_and(|a| Arc::ptr_eq(s, a)),
            })
            .collect();
        if !views.iter().any(|v| v.eligible) {
            return Attempt::Full;
        }
        let request = PickRequest {
            servers: &views,
            generation,
            client: hint.client,
            key: hint.key,
        };
        let Some(index) = backend.algorithm.pick(&request) else {
            return Attempt::Full;
        };
        let Some(server) = tier.get(index) else {
            return Attempt::Full;
        };
        if server.try_take_slot() {
            backend.counters.lb_total.fetch_add(1, Ordering::Relaxed);
            return Attempt::Leased(Lease {
                server: Arc::clone(server),
                backend: Arc::clone(backend),
            });
        }
    }
    Attempt::Full
}
