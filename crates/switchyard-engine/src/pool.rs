//! A server's idle keep-alive connections, and the accounting of its connections that
//! HAProxy's `show servers conn` and `show stat` report (`used_cur`, `used_max`,
//! `need_est`, `unsafe_nb`, `safe_nb`, `idle_cur`, `idle_per_thr`).
//!
//! The pool keeps what HAProxy keeps: a connection goes idle unless the server's connections
//! (used and idle) already exceed its estimated need by `pool-low-conn`, or its thread has
//! none idle yet; every `pool-purge-delay` half of the surplus over the need is closed, and
//! the estimate moves halfway towards the most connections used since the last purge. A
//! burst leaves idle connections for a few purge periods, not for ever, and a steady load
//! keeps what it uses.
//!
//! As HAProxy 2.6 (`tune.pool-high-fd-ratio` 25, `tune.pool-low-fd-ratio` 20), pooling also
//! yields to the descriptors the configuration allows for (its `maxsock`, about two per
//! `maxconn`): nothing more goes idle once a quarter of them are in use, past a fifth only a
//! thread's first idle connection does, and past a quarter every server connection about to
//! be made first closes one idle connection of that server, so that idle connections never
//! take the descriptors new clients and their servers need.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use switchyard_config as config;

/// HAProxy's `pool-purge-delay` default.
const PURGE_DELAY: Duration = Duration::from_secs(5);

/// Sockets open for sessions: client connections, and server connections in use or idle.
static OPEN: AtomicU32 = AtomicU32::new(0);
/// Listening sockets, counted with the open ones as HAProxy's `ha_used_fds` counts them.
static LISTENING: AtomicU32 = AtomicU32::new(0);
/// Descriptors in use above which nothing is pooled and each new server connection closes
/// an idle one (a quarter of the budget).
static FDS_HIGH: AtomicU32 = AtomicU32::new(u32::MAX);
/// Descriptors in use at or above which only a thread's first idle connection is pooled
/// (a fifth).
static FDS_LOW: AtomicU32 = AtomicU32::new(u32::MAX);

/// The descriptors the configuration allows for (HAProxy's `global.maxsock`), which the
/// pooling thresholds are fractions of (rounded up, as HAProxy rounds), and the listening
/// sockets open.
pub(crate) fn set_fd_budget(maxsock: u64, listening: u32) {
    let (high, low) = fd_thresholds(maxsock);
    FDS_HIGH.store(high, Ordering::Relaxed);
    FDS_LOW.store(low, Ordering::Relaxed);
    LISTENING.store(listening, Ordering::Relaxed);
}

/// The high and low thresholds: a quarter and a fifth of `maxsock`, rounded up.
fn fd_thresholds(maxsock: u64) -> (u32, u32) {
    let share = |percent: u64| {
        u32::try_from(maxsock.saturating_mul(percent).div_ceil(100)).unwrap_or(u32::MAX)
    };
    (share(25), share(20))
}

/// Descriptors in use by listeners and sessions.
fn fds_in_use() -> u32 {
    LISTENING
        .load(Ordering::Relaxed)
        .saturating_add(OPEN.load(Ordering::Relaxed))
}

/// One open socket of a session (client or server connection) in the descriptor count;
/// uncounted when dropped, with the socket it stands for.
#[derive(Debug)]
pub struct Descriptor(());

impl Descriptor {
    pub(crate) fn open() -> Descriptor {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Descriptor(())
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pooled connection as the pool sees it.
pub(crate) trait Reusable {
    /// Not closed by the server, with nothing unexpected to read.
    fn is_open(&self) -> bool;
    /// "Safe" in HAProxy's terms: kept open by the server after a response and used
    /// again, so fit for a client's first request under `http-reuse aggressive`.
    fn proven(&self) -> bool;
}

/// Which idle connections a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proven {
    /// Only those [`Reusable::proven`].
    Yes,
    Any,
}

/// `pool-*` settings of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// `pool-max-conn`; `None` is unlimited (-1).
    pub max_idle: Option<u32>,
    /// `pool-purge-delay`; zero keeps no idle connection.
    pub purge_delay: Duration,
    /// `pool-low-conn`.
    pub low_idle: u32,
}

impl PoolSettings {
    /// HAProxy 2.6's defaults: configured servers pool without limit, purging every 5 s;
    /// servers from `add server` have no pool unless given the settings.
    pub fn of(server: &config::Server, dynamic: bool) -> PoolSettings {
        PoolSettings {
            max_idle: server
                .pool_max_conn
                .unwrap_or(if dynamic { Some(0) } else { None }),
            purge_delay: server.pool_purge_delay.unwrap_or(if dynamic {
                Duration::ZERO
            } else {
                PURGE_DELAY
            }),
            low_idle: server.pool_low_conn,
        }
    }

    fn pools(&self) -> bool {
        !self.purge_delay.is_zero() && self.max_idle != Some(0)
    }
}

/// What `show servers conn` prints of a server's connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub used: u32,
    pub used_max: u32,
    pub need_est: u32,
    pub idle_unsafe: u32,
    pub idle_safe: u32,
    /// Idle connections per thread (index: `workers::current`).
    pub idle_per_thread: Vec<u32>,
}

/// Connections in use: counted apart from the idle list, without its lock, since every
/// HTTP exchange and TCP connection changes them.
#[derive(Debug, Default)]
struct Usage {
    used: AtomicU32,
    /// Most used at once since the last purge.
    used_max: AtomicU32,
    /// The estimate of connections needed, which idle connections are weighed against.
    need_est: AtomicU32,
}

impl Usage {
    /// Raises the most used and the need to `used`. Read first: they rarely move, and a
    /// read leaves the cache line shared between threads where a write would take it.
    fn record(&self, used: u32) {
        for counter in [&self.used_max, &self.need_est] {
            if counter.load(Ordering::Relaxed) < used {
                counter.fetch_max(used, Ordering::Relaxed);
            }
        }
    }
}

/// A connection of the pool's server in use; counted until dropped or pooled again.
#[derive(Debug)]
pub(crate) struct InUse(Arc<Usage>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An idle connection and when it went idle.
#[derive(Debug)]
pub(crate) struct Idle<C> {
    pub conn: C,
    pub since: Instant,
    /// The thread whose reactor the connection is registered with.
    pub thread: usize,
}

#[derive(Debug)]
struct IdleList<C> {
    /// Oldest first.
    conns: VecDeque<Idle<C>>,
    safe: u32,
    /// Per thread: (unsafe, safe).
    per_thread: Vec<(u32, u32)>,
}

impl<C> Default for IdleList<C> {
    fn default() -> Self {
        IdleList {
            conns: VecDeque::new(),
            safe: 0,
            per_thread: Vec::new(),
        }
    }
}

impl<C: Reusable> IdleList<C> {
    fn thread(&mut self, thread: usize) -> &mut (u32, u32) {
        if self.per_thread.len() <= thread {
            self.per_thread.resize(thread + 1, (0, 0));
        }
        &mut self.per_thread[thread]
    }

    fn push(&mut self, idle: Idle<C>, safe: bool) {
        let counts = self.thread(idle.thread);
        if safe {
            counts.1 += 1;
            self.safe += 1;
        } else {
            counts.0 += 1;
        }
        self.conns.push_back(idle);
    }

    fn remove(&mut self, index: usize) -> Option<Idle<C>> {
        let idle = self.conns.remove(index)?;
        let safe = idle.conn.proven();
        let counts = self.thread(idle.thread);
        if safe {
            counts.1 -= 1;
            self.safe -= 1;
        } else {
            counts.0 -= 1;
        }
        Some(idle)
    }

    /// Forgets the connections their servers closed meanwhile.
    fn prune_closed(&mut self) {
        let mut index = 0;
        while index < self.conns.len() {
            if self.conns[index].conn.is_open() {
                index += 1;
            } else {
                self.remove(index);
            }
        }
    }

    fn on_thread(&self, thread: usize) -> (u32, u32) {
        self.per_thread.get(thread).copied().unwrap_or((0, 0))
    }
}

/// One server's idle connections and connection accounting.
#[derive(Debug)]
pub(crate) struct Pool<C> {
    settings: PoolSettings,
    usage: Arc<Usage>,
    idle: Mutex<IdleList<C>>,
    /// Whether a purge task runs for this pool.
    purging: AtomicBool,
}

impl<C: Reusable + Send + 'static> Pool<C> {
    pub fn new(settings: PoolSettings) -> Pool<C> {
        Pool {
            settings,
            usage: Arc::default(),
            idle: Mutex::default(),
            purging: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> PoolSettings {
        self.settings
    }

    fn lock(&self) -> MutexGuard<'_, IdleList<C>> {
        crate::lock(&self.idle)
    }

    /// A connection opened (or being opened) that is not kept: a TCP session's, whose
    /// connection HAProxy stops counting as used once it belongs to the session, or a
    /// check's. It still raises the most used and the estimated need.
    pub fn passing(&self) {
        let used = self.usage.used.load(Ordering::Relaxed) + 1;
        self.usage.record(used);
    }

    /// A new connection to keep for reuse: counted as used until pooled or dropped.
    pub fn fresh(&self) -> InUse {
        let used = self.usage.used.fetch_add(1, Ordering::Relaxed) + 1;
        self.usage.record(used);
        InUse(Arc::clone(&self.usage))
    }

    /// An idle connection for a request on thread `here`: one of this thread first, the
    /// most recently pooled (the least likely to meet the server's keep-alive timeout).
    /// Another thread's only when the server has `pool-low-conn` idle connections or more.
    pub fn take(&self, needs: Proven, here: usize) -> Option<(Idle<C>, InUse)> {
        let mut idle = self.lock();
        loop {
            let steal = idle.conns.len() >= self.settings.low_idle as usize;
            let index = pick_idle(
                idle.conns
                    .iter()
                    .map(|i| (i.thread, needs == Proven::Any || i.conn.proven())),
                here,
                steal,
            )?;
            let taken = idle.remove(index)?;
            if taken.conn.is_open() {
                return Some((taken, self.fresh()));
            }
        }
    }

    /// Pools `conn`, now idle on thread `here`, unless the server already has all the
    /// connections it is estimated to need or descriptors run short (HAProxy's rules);
    /// gives it back otherwise, for the caller to close.
    pub fn put(self: &Arc<Self>, conn: C, in_use: InUse, here: usize) -> Result<(), C> {
        if !self.settings.pools() || !conn.is_open() {
            drop(in_use);
            return Err(conn);
        }
        let safe = conn.proven();
        {
            let mut idle = self.lock();
            let idle_now = idle.conns.len() as u32;
            let used = self.usage.used.load(Ordering::Relaxed);
            let need = self.usage.need_est.load(Ordering::Relaxed);
            let (thread_unsafe, thread_safe) = idle.on_thread(here);
            let fds = fds_in_use();
            let admitted = Admission {
                idle: idle_now,
                used,
                need,
                thread_has_none: thread_safe == 0 && (safe || thread_unsafe == 0),
                fds,
            }
            .admits(
                &self.settings,
                FDS_HIGH.load(Ordering::Relaxed),
                FDS_LOW.load(Ordering::Relaxed),
            );
            if !admitted {
                drop(idle);
                drop(in_use);
                return Err(conn);
            }
            idle.push(
                Idle {
                    conn,
                    since: Instant::now(),
                    thread: here,
                },
                safe,
            );
            drop(in_use);
        }
        if !self.purging.swap(true, Ordering::AcqRel) {
            tokio::spawn(Arc::clone(self).purge());
        }
        Ok(())
    }

    /// Every `pool-purge-delay` while connections are idle: closes half the surplus of
    /// connections over the estimated need (spread over threads as they hold them, unsafe
    /// ones and the oldest first) and moves the estimate halfway to the most used since
    /// the last purge.
    async fn purge(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.settings.purge_delay).await;
            let closed = {
                let mut idle = self.lock();
                idle.prune_closed();
                if idle.conns.is_empty() {
                    // Cleared under the lock, so a connection pooled after this finds it
                    // clear and starts a new task.
                    self.purging.store(false, Ordering::Release);
                    return;
                }
                self.purge_step(&mut idle)
            };
            // Closed outside the lock.
            drop(closed);
        }
    }

    /// One purge (HAProxy's arithmetic, to the rounding); returns the connections to close.
    fn purge_step(&self, idle: &mut IdleList<C>) -> Vec<Idle<C>> {
        let usage = &self.usage;
        let used = usage.used.load(Ordering::Relaxed);
        let used_max = usage.used_max.load(Ordering::Relaxed);
        let need = usage.need_est.load(Ordering::Relaxed);
        let idle_now = idle.conns.len() as i64;
        let exceed = i64::from(used) + idle_now - i64::from(used_max.max(need));
        // As HAProxy rounds: half, rounded up (and a surplus of -1 closes one).
        let to_close = exceed / 2 + (exceed & 1);
        let need = ((need + used_max) / 2).max(used_max);
        usage.need_est.store(need, Ordering::Relaxed);
        usage.used_max.store(used, Ordering::Relaxed);
        let mut closed = Vec::new();
        if to_close <= 0 {
            return closed;
        }
        for thread in 0..idle.per_thread.len() {
            let (unsafe_nb, safe_nb) = idle.on_thread(thread);
            let on_thread = i64::from(unsafe_nb + safe_nb);
            let mut quota = to_close * on_thread / idle_now + 1;
            for proven in [false, true] {
                let mut index = 0;
                while quota > 0 && index < idle.conns.len() {
                    let candidate = &idle.conns[index];
                    if candidate.thread == thread && candidate.conn.proven() == proven {
                        closed.extend(idle.remove(index));
                        quota -= 1;
                    } else {
                        index += 1;
                    }
                }
            }
        }
        closed
    }

    /// Before a connection to this pool's server is made (or reused) on thread `here`:
    /// past the high descriptor threshold, closes one idle connection of the server, this
    /// thread's first (an unsafe one: HAProxy looks at its own thread's unsafe list only),
    /// else another thread's, unsafe before safe (HAProxy's `connect_server`).
    pub fn make_room(&self, here: usize) {
        if fds_in_use() > FDS_HIGH.load(Ordering::Relaxed) {
            self.close_one_idle(here);
        }
    }

    fn close_one_idle(&self, here: usize) {
        let closed = {
            let mut idle = self.lock();
            let pick = |idle: &IdleList<C>, own: bool, proven: bool| {
                idle.conns
                    .iter()
                    .position(|i| (i.thread == here) == own && i.conn.proven() == proven)
            };
            let index = pick(&idle, true, false)
                .or_else(|| pick(&idle, false, false))
                .or_else(|| pick(&idle, false, true));
            index.and_then(|index| idle.remove(index))
        };
        // Closed outside the lock.
        drop(closed);
    }

    /// Closes every idle connection: the server moved, or went into maintenance.
    pub fn close_idle(&self) {
        let closed = std::mem::take(&mut *self.lock());
        drop(closed);
    }

    /// The counts `show servers conn` prints (closed idle connections are forgotten first).
    pub fn stats(&self) -> PoolStats {
        let (idle_unsafe, idle_safe, idle_per_thread) = {
            let mut idle = self.lock();
            idle.prune_closed();
            let total = idle.conns.len() as u32;
            (
                total - idle.safe,
                idle.safe,
                idle.per_thread.iter().map(|(u, s)| u + s).collect(),
            )
        };
        PoolStats {
            used: self.usage.used.load(Ordering::Relaxed),
            used_max: self.usage.used_max.load(Ordering::Relaxed),
            need_est: self.usage.need_est.load(Ordering::Relaxed),
            idle_unsafe,
            idle_safe,
            idle_per_thread,
        }
    }
}

/// What decides whether a connection that went idle is pooled.
#[derive(Debug, Clone, Copy)]
struct Admission {
    /// The server's idle connections.
    idle: u32,
    /// Its used connections, this one included.
    used: u32,
    need: u32,
    /// The thread has no safe idle connection, nor an unsafe one unless this one is safe.
    thread_has_none: bool,
    /// Descriptors estimated in use.
    fds: u32,
}

impl Admission {
    /// HAProxy's `srv_add_to_idle_list` conditions.
    fn admits(&self, settings: &PoolSettings, fds_high: u32, fds_low: u32) -> bool {
        let under_limit = settings.max_idle.is_none_or(|max| self.idle < max);
        let within_need = self.fds < fds_low
            && self.used + self.idle <= self.used.max(self.need) + settings.low_idle;
        self.fds < fds_high && under_limit && (self.thread_has_none || within_need)
    }
}

/// Which idle connection (oldest first: each one's thread and whether it fits the request)
/// to take on thread `here`: the most recent fitting one of this thread, else, if `steal`,
/// the most recent fitting one of any thread.
fn pick_idle(
    mut idle: impl DoubleEndedIterator<Item = (usize, bool)> + ExactSizeIterator + Clone,
    here: usize,
    steal: bool,
) -> Option<usize> {
    idle.clone()
        .rposition(|(thread, fits)| fits && thread == here)
        .or_else(|| steal.then(|| idle.rposition(|(_, fits)| fits)).flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pooled connection: proven or not, open or closed by its server.
    #[derive(Debug)]
    struct Conn {
        proven: bool,
        open: Arc<AtomicBool>,
    }

    impl Reusable for Conn {
        fn is_open(&self) -> bool {
            self.open.load(Ordering::Relaxed)
        }
        fn proven(&self) -> bool {
            self.proven
        }
    }

    fn conn(proven: bool) -> Conn {
        Conn {
            proven,
            open: Arc::new(AtomicBool::new(true)),
        }
    }

    impl Admission {
        fn with_fds(self, fds: u32) -> Admission {
            Admission { fds, ..self }
        }
    }

    fn pool(max_idle: Option<u32>, low_idle: u32) -> Arc<Pool<Conn>> {
        Arc::new(Pool::new(PoolSettings {
            max_idle,
            purge_delay: Duration::from_secs(3600),
            low_idle,
        }))
    }

    fn counts(p: &Pool<Conn>) -> (u32, u32, u32, u32, u32, Vec<u32>) {
        let s = p.stats();
        (
            s.used,
            s.used_max,
            s.need_est,
            s.idle_unsafe,
            s.idle_safe,
            s.idle_per_thread,
        )
    }

    fn purge(p: &Pool<Conn>) -> usize {
        let mut idle = p.lock();
        p.purge_step(&mut idle).len()
    }

    #[test]
    fn idle_choice_prefers_own_thread_and_steals_only_when_allowed() {
        let pool = [(0, true), (1, true), (0, false), (1, true)];
        assert_eq!(pick_idle(pool.iter().copied(), 0, true), Some(0));
        assert_eq!(pick_idle(pool.iter().copied(), 1, true), Some(3));
        // A thread with none of its own takes the most recent of any.
        assert_eq!(pick_idle(pool.iter().copied(), 2, true), Some(3));
        assert_eq!(pick_idle(pool.iter().copied(), 2, false), None);
        let pool = [(1, true), (0, false), (1, false)];
        assert_eq!(pick_idle(pool.iter().copied(), 0, true), Some(0));
        assert_eq!(pick_idle([(0, false)].iter().copied(), 0, true), None);
        assert_eq!(pick_idle(std::iter::empty(), 0, true), None);
    }

    /// The sequence measured against HAProxy 2.6.12 (two servers, `nbthread 2`, a client
    /// on thread 0 sending three requests round-robin, then one on thread 1): the counts
    /// of `show servers conn`, then what two purges leave.
    #[tokio::test]
    async fn accounting_and_purges_follow_haproxy() {
        let (h1, h2) = (pool(None, 0), pool(None, 0));
        // Client a, first request to h1: a new connection, pooled unsafe on thread 0.
        let used = h1.fresh();
        assert_eq!(counts(&h1), (1, 1, 1, 0, 0, vec![]));
        h1.put(conn(false), used, 0).unwrap();
        assert_eq!(counts(&h1), (0, 1, 1, 1, 0, vec![1]));
        // Its second request, to h2: a non-first request may reuse, but h2 has nothing.
        let used = h2.fresh();
        h2.put(conn(false), used, 0).unwrap();
        // Its third, to h1: reuses the unsafe connection, which comes back proven.
        let (taken, used) = h1.take(Proven::Any, 0).unwrap();
        assert_eq!(counts(&h1), (1, 1, 1, 0, 0, vec![0]));
        drop(taken);
        h1.put(conn(true), used, 0).unwrap();
        assert_eq!(counts(&h1), (0, 1, 1, 0, 1, vec![1]));
        // Client b (thread 1), first request, to h2: the unsafe one does not do; a new one.
        assert!(h2.take(Proven::Yes, 1).is_none());
        let used = h2.fresh();
        h2.put(conn(false), used, 1).unwrap();
        assert_eq!(counts(&h2), (0, 1, 1, 2, 0, vec![1, 1]));
        // First purge: h2's surplus (2 idle, need 1) closes one per thread; h1 keeps its
        // one; the most used resets to what is used now (0).
        assert_eq!(purge(&h2), 2);
        assert_eq!(counts(&h2), (0, 0, 1, 0, 0, vec![0, 0]));
        assert_eq!(purge(&h1), 0);
        assert_eq!(counts(&h1), (0, 0, 1, 0, 1, vec![1]));
        // Second: h1's need halves to 0; third: its connection goes.
        assert_eq!(purge(&h1), 0);
        assert_eq!(counts(&h1), (0, 0, 0, 0, 1, vec![1]));
        assert_eq!(purge(&h1), 1);
        assert_eq!(counts(&h1), (0, 0, 0, 0, 0, vec![0]));
    }

    #[tokio::test]
    async fn connections_beyond_the_need_are_not_pooled() {
        for low_idle in [0, 1] {
            let p = pool(None, low_idle);
            // Three used at once, then released on thread 0: all three are needed.
            let used: Vec<InUse> = (0..3).map(|_| p.fresh()).collect();
            for u in used {
                p.put(conn(true), u, 0).unwrap();
            }
            assert_eq!(counts(&p), (0, 3, 3, 0, 3, vec![3]));
            // Idle purges: the need stays 3 (nothing in surplus), then halves to 1, and
            // the third closes half the surplus of 2, rounded up, plus one per thread.
            assert_eq!(purge(&p), 0);
            assert_eq!(counts(&p).2, 3);
            assert_eq!(purge(&p), 0);
            assert_eq!(counts(&p).2, 1);
            assert_eq!(purge(&p), 2);
            assert_eq!(counts(&p), (0, 0, 0, 0, 1, vec![1]));
            // One used (need 1) and one idle on thread 0: another idle one there exceeds
            // the need, unless pool-low-conn allows one more.
            let kept = p.put(conn(true), p.fresh(), 0).is_ok();
            assert_eq!(kept, low_idle == 1);
            // A thread with no idle connection of its own keeps one regardless.
            p.put(conn(true), p.fresh(), 1).unwrap();
        }
    }

    #[test]
    fn pooling_yields_to_the_descriptor_limit() {
        let settings = PoolSettings {
            max_idle: None,
            purge_delay: Duration::from_secs(5),
            low_idle: 0,
        };
        // A budget of 1,000 descriptors: nothing pooled from 250 in use, only a thread's
        // first from 200.
        let (high, low) = fd_thresholds(1000);
        assert_eq!((high, low), (250, 200));
        // HAProxy rounds up: `maxconn 60`, one frontend and a stats socket, one thread
        // (maxsock 10 + 2 + 10 + 120 + 3 = 145) pool below 37 descriptors.
        assert_eq!(fd_thresholds(145), (37, 29));
        let first = Admission {
            idle: 0,
            used: 1,
            need: 1,
            thread_has_none: true,
            fds: 0,
        };
        let needed = Admission {
            thread_has_none: false,
            idle: 0,
            ..first
        };
        for (fds, first_kept, needed_kept) in [
            (0, true, true),
            (199, true, true),
            (200, true, false),
            (249, true, false),
            (250, false, false),
        ] {
            assert_eq!(
                first.with_fds(fds).admits(&settings, high, low),
                first_kept,
                "{fds}"
            );
            assert_eq!(
                needed.with_fds(fds).admits(&settings, high, low),
                needed_kept,
                "{fds}"
            );
        }
    }

    /// Past the high threshold, a connection about to be made closes one idle connection:
    /// an unsafe one of its own thread, else another thread's, unsafe before safe.
    #[tokio::test]
    async fn room_is_made_from_unsafe_connections_of_this_thread_first() {
        let p = pool(None, 0);
        let idle = |p: &Pool<Conn>| {
            p.lock()
                .conns
                .iter()
                .map(|i| (i.thread, i.conn.proven()))
                .collect::<Vec<_>>()
        };
        for (thread, proven) in [(0, true), (1, true), (1, false), (0, false)] {
            let mut idle = p.lock();
            idle.push(
                Idle {
                    conn: conn(proven),
                    since: Instant::now(),
                    thread,
                },
                proven,
            );
        }
        p.close_one_idle(0);
        assert_eq!(idle(&p), [(0, true), (1, true), (1, false)]);
        // Thread 0's own safe connection is not taken: another thread's unsafe one goes.
        p.close_one_idle(0);
        assert_eq!(idle(&p), [(0, true), (1, true)]);
        p.close_one_idle(0);
        assert_eq!(idle(&p), [(0, true)]);
        p.close_one_idle(0);
        assert_eq!(
            idle(&p),
            [(0, true)],
            "HAProxy keeps its own thread's safe ones"
        );
        p.close_one_idle(1);
        assert!(idle(&p).is_empty());
        assert_eq!(counts(&p).3 + counts(&p).4, 0);
    }

    #[test]
    fn pool_max_conn_and_disabled_pools() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let p = pool(Some(1), 0);
        let (a, b) = (p.fresh(), p.fresh());
        p.put(conn(true), a, 0).unwrap();
        assert!(p.put(conn(true), b, 1).is_err(), "pool-max-conn 1");
        assert_eq!(counts(&p).0, 0, "a refused connection is no longer used");
        let p = pool(Some(0), 0);
        assert!(p.put(conn(true), p.fresh(), 0).is_err());
        let closed = conn(true);
        closed.open.store(false, Ordering::Relaxed);
        let p = pool(None, 0);
        assert!(p.put(closed, p.fresh(), 0).is_err());
    }

    #[tokio::test]
    async fn closed_connections_are_neither_taken_nor_counted() {
        let p = pool(None, 0);
        let c = conn(true);
        let open = Arc::clone(&c.open);
        p.put(c, p.fresh(), 0).unwrap();
        open.store(false, Ordering::Relaxed);
        assert!(p.take(Proven::Yes, 0).is_none());
        let c = conn(true);
        let open = Arc::clone(&c.open);
        p.put(c, p.fresh(), 0).unwrap();
        open.store(false, Ordering::Relaxed);
        assert_eq!(counts(&p).4, 0);
    }

    #[tokio::test]
    async fn low_idle_keeps_threads_to_their_own() {
        let p = pool(None, 2);
        p.put(conn(true), p.fresh(), 0).unwrap();
        assert!(
            p.take(Proven::Any, 1).is_none(),
            "below pool-low-conn: no stealing"
        );
        p.put(conn(true), p.fresh(), 0).unwrap();
        assert!(p.take(Proven::Any, 1).is_some());
    }
}
