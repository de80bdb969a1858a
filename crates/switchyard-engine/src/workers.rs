//! Threads for `nbthread` > 1: one single-threaded tokio runtime per thread, as HAProxy's.
//!
//! The process's main runtime is thread 0: it runs the control plane, the accept loops and
//! its share of the sessions. Each accepted connection goes to the thread carrying the fewest
//! sessions (HAProxy: "the least loaded thread") and stays there for its whole life. A
//! work-stealing runtime instead moved sessions' tasks between threads, and parked and woke
//! threads as they ran out of work, leaving CPU idle under short connections; with threads of
//! their own, HTTP requests take 5-15 % less user time (docs/performance.md, "More than one
//! thread").
//!
//! A connection handed to a thread that is awake waits in that thread's inbox, which the
//! thread empties before it sleeps and whenever it polls a session: only a sleeping thread
//! is woken (an eventfd write and one more `epoll_wait`), as HAProxy wakes only sleeping
//! threads.
//!
//! With `nbthread 1` nothing here runs: sessions are spawned where they are accepted.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio::runtime::Handle;

use crate::session::Session;

/// One thread's share of the sessions.
struct Thread {
    sessions: AtomicU32,
    /// `None` for thread 0, the runtime the accept loops run on: what it accepts it starts
    /// itself.
    remote: Option<Remote>,
}

/// A thread other than thread 0: what it is handed goes through its inbox, and its runtime
/// runs the task that wakes it.
struct Remote {
    runtime: Handle,
    inbox: Inbox,
}

/// A session waiting for the thread it was handed to: registers its socket there and spawns
/// its task.
type Arrival = Box<dyn FnOnce() + Send>;

/// Sessions handed to a thread while it was awake. Its flags sit on cache lines of their own:
/// `filled` is read at every poll of a session on the receiving thread and written by the
/// accepting one, `asleep` the other way round.
struct Inbox {
    arrivals: Mutex<Vec<Arrival>>,
    /// Set after an arrival is queued; cleared by the thread as it takes them.
    filled: Padded<AtomicBool>,
    /// Set by the thread before it sleeps; cleared when it wakes, or by the one thread that
    /// wakes it (so that arrivals until it runs add no more wake-ups).
    asleep: Padded<AtomicBool>,
}

#[repr(align(128))]
struct Padded<T>(T);

impl Inbox {
    fn new() -> Self {
        Inbox {
            arrivals: Mutex::new(Vec::new()),
            filled: Padded(AtomicBool::new(false)),
            asleep: Padded(AtomicBool::new(false)),
        }
    }

    /// Queues `arrival`; true if the thread sleeps and must be woken to take it.
    ///
    /// The thread sets `asleep` before it checks `filled` and sleeps; this sets `filled`
    /// before it checks `asleep`. Sequentially consistent, one of the two sees the other's
    /// store: the thread finds the arrival, or this finds the thread asleep.
    fn queue(&self, arrival: Arrival) -> bool {
        crate::lock(&self.arrivals).push(arrival);
        self.filled.0.store(true, Ordering::SeqCst);
        self.asleep.0.swap(false, Ordering::SeqCst)
    }

    /// Runs the sessions waiting here (on the thread this inbox is for); whether there were
    /// any.
    fn take(&self) -> bool {
        // A plain load first: this runs at every poll of a session, and an empty inbox
        // must not cost a write to a line the accepting thread reads.
        if !self.filled.0.load(Ordering::SeqCst) || !self.filled.0.swap(false, Ordering::SeqCst) {
            return false;
        }
        let arrivals = std::mem::take(&mut *crate::lock(&self.arrivals));
        let any = !arrivals.is_empty();
        for arrival in arrivals {
            arrival();
        }
        any
    }

    /// Before the thread sleeps: takes what arrived; whether anything did (tokio then runs it
    /// instead of sleeping).
    fn before_sleep(&self) -> bool {
        self.asleep.0.store(true, Ordering::SeqCst);
        self.take()
    }

    fn after_wake(&self) {
        self.asleep.0.store(false, Ordering::SeqCst);
    }
}

/// This thread's inbox: `None` on thread 0 and on threads not started here.
fn own_inbox() -> Option<&'static Inbox> {
    let thread = THREADS.get()?.get(current())?;
    thread.remote.as_ref().map(|remote| &remote.inbox)
}

/// Starts the sessions handed to this thread while it was awake (called as sessions are
/// polled, and by the busy-polling loop).
pub(crate) fn take_arrivals() {
    if let Some(inbox) = own_inbox() {
        inbox.take();
    }
}

/// The session runtimes' `on_thread_park` hook: takes what arrived while the thread was
/// awake, else yields before sleeping (`park`).
fn before_park() {
    if own_inbox().is_some_and(Inbox::before_sleep) {
        return;
    }
    crate::park::before_park();
}

/// The session runtimes' `on_thread_unpark` hook.
fn after_unpark() {
    if let Some(inbox) = own_inbox() {
        inbox.after_wake();
    }
    crate::park::after_unpark();
}

static THREADS: OnceLock<Vec<Thread>> = OnceLock::new();

thread_local! {
    /// This thread's index: 0 for the main thread (and any thread not started here).
    static CURRENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Starts `extra` threads besides the main one (once per process; later calls change
/// nothing). Without it every session runs on the runtime that accepted it.
pub fn start(extra: usize) -> std::io::Result<()> {
    if extra == 0 || THREADS.get().is_some() {
        return Ok(());
    }
    let mut threads = Vec::with_capacity(extra + 1);
    threads.push(Thread {
        sessions: AtomicU32::new(0),
        remote: None,
    });
    let mut runtimes = Vec::with_capacity(extra);
    for _ in 1..=extra {
        let runtime = runtime()?;
        threads.push(Thread {
            sessions: AtomicU32::new(0),
            remote: Some(Remote {
                runtime: runtime.handle().clone(),
                inbox: Inbox::new(),
            }),
        });
        runtimes.push(runtime);
    }
    // Before any of them runs: a thread finds its inbox through `THREADS` when it goes to
    // sleep, and one that slept unseen would not be woken for what is handed to it (until
    // its timer floor fired, half a second later).
    if THREADS.set(threads).is_err() {
        return Ok(());
    }
    for (index, runtime) in (1..).zip(runtimes) {
        // The thread's own timer floor keeps it busy forever; its sessions are handed to it
        // from thread 0.
        std::thread::Builder::new()
            .name(format!("switchyard-{index}"))
            .spawn(move || {
                CURRENT.with(|current| current.set(index));
                runtime.spawn(crate::busy::run());
                runtime.block_on(crate::timer_floor())
            })?;
    }
    Ok(())
}

/// A session thread's runtime (the main thread's too): single-threaded, with I/O and timers,
/// yielding the CPU before it sleeps after a short burst of work (`park`).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(before_park)
        .on_thread_unpark(after_unpark)
        .build()
}

/// Threads in all (what `nbthread` became).
pub fn count() -> usize {
    THREADS.get().map_or(1, Vec::len)
}

/// The index of the thread this runs on: whose reactor a socket created here is registered
/// with.
pub(crate) fn current() -> usize {
    CURRENT.with(std::cell::Cell::get)
}

/// Runs a freshly accepted session on the least loaded thread. `make` builds the session
/// around the client socket once that socket is registered with the chosen thread's reactor
/// (the accept loop registers it with none: a connection handed over costs no more
/// `epoll_ctl` than one that stays).
///
/// The tasks are shaped for what they hold while idle, since tokio rounds each task up to
/// a multiple of 128 bytes: an HTTP connection's whole future lives in its task (512
/// bytes) instead of a task pointing to a boxed future. A session handed to another thread
/// goes there as a boxed closure that registers the socket, builds the session and spawns
/// its task on that thread, as the accepting thread does: a task that carried the
/// session's future itself would keep, beside it, what it was built from (the closure's
/// captures, or a second copy of the future: 1,024 bytes per HTTP connection, twice the
/// task the accepting thread makes). The closure waits in the thread's inbox; a sleeping
/// thread is woken by a short task that empties it.
pub(crate) fn dispatch<F>(client: std::net::TcpStream, make: F)
where
    F: FnOnce(TcpStream) -> Session + Send + 'static,
{
    let chosen = THREADS.get().and_then(|threads| {
        let index = least_loaded(
            threads
                .iter()
                .map(|thread| thread.sessions.load(Ordering::Relaxed)),
        );
        threads.get(index).map(|thread| (index, thread))
    });
    let Some((index, thread)) = chosen else {
        start_here(client, make, None);
        return;
    };
    thread.sessions.fetch_add(1, Ordering::Relaxed);
    let share = Share(u32::try_from(index).unwrap_or(u32::MAX));
    let Some(remote) = &thread.remote else {
        start_here(client, make, Some(share));
        return;
    };
    let arrival: Arrival = Box::new(move || start_here(client, make, Some(share)));
    if remote.inbox.queue(arrival) {
        remote.runtime.spawn(async { take_arrivals() });
    }
}

/// Registers `client` with this thread's reactor and spawns its session's task here.
fn start_here<F>(client: std::net::TcpStream, make: F, share: Option<Share>)
where
    F: FnOnce(TcpStream) -> Session,
{
    let Some(client) = register(client) else {
        return;
    };
    let session = Box::new(make(client));
    if session.is_http() {
        tokio::spawn(Counted {
            task: session.run_http(),
            _share: share,
        });
    } else {
        tokio::spawn(Counted {
            task: session.into_tcp_task(),
            _share: share,
        });
    }
}

/// The socket, registered with this thread's reactor; `None` (the connection closed) if that
/// fails.
fn register(client: std::net::TcpStream) -> Option<TcpStream> {
    TcpStream::from_std(client)
        .map_err(|error| tracing::warn!(%error, "cannot register a connection"))
        .ok()
}

/// The index of the thread with the fewest sessions. Ties go to the lowest index, thread 0
/// first: no hand-over to another thread when nothing is gained by it.
fn least_loaded(sessions: impl Iterator<Item = u32>) -> usize {
    sessions
        .enumerate()
        .min_by_key(|&(index, sessions)| (sessions, index))
        .map_or(0, |(index, _)| index)
}

pin_project_lite::pin_project! {
    /// A session's task and its place in its thread's count. A future of its own rather
    /// than an `async fn`, which would keep `task` twice in its state (the argument and
    /// the future it awaits).
    struct Counted<F> {
        #[pin]
        task: F,
        _share: Option<Share>,
    }
}

impl<F: Future<Output = ()>> Future for Counted<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A thread busy with its sessions may not sleep for a while: it takes what was
        // handed to it as it goes.
        take_arrivals();
        crate::idle::session_polled();
        self.project().task.poll(cx)
    }
}

/// A session counted on a thread; uncounted when its task ends or is dropped. The thread's
/// index as a `u32`: with its `Option`, 8 bytes of every session's task instead of 16.
struct Share(u32);

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(thread) = THREADS
            .get()
            .and_then(|threads| threads.get(self.0 as usize))
        {
            thread.sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{least_loaded, Counted, Inbox};
    use crate::session::Session;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    /// A thread running a runtime whose park hooks use `inbox`, as a session thread's use its
    /// own; it runs until `stop` is dropped.
    fn receiving_thread(
        inbox: &'static Inbox,
    ) -> (tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || {
                inbox.before_sleep();
            })
            .on_thread_unpark(move || inbox.after_wake())
            .build()
            .expect("runtime");
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = runtime.block_on(stopped);
        });
        (handle, stop)
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn is_asleep(inbox: &Inbox) -> bool {
        inbox.asleep.0.load(Ordering::SeqCst)
    }

    #[test]
    fn only_a_sleeping_thread_is_woken_and_only_once() {
        let inbox: &'static Inbox = Box::leak(Box::new(Inbox::new()));
        let (handle, _stop) = receiving_thread(inbox);
        let (ran, arrived) = mpsc::channel::<&str>();
        wait_until("the thread sleeps", || is_asleep(inbox));

        let sender = ran.clone();
        assert!(inbox.queue(Box::new(move || sender.send("first").unwrap())));
        let sender = ran.clone();
        assert!(
            !inbox.queue(Box::new(move || sender.send("second").unwrap())),
            "a wake-up is already on its way"
        );
        handle.spawn(async move {
            inbox.take();
        });
        let timeout = Duration::from_secs(10);
        assert_eq!(arrived.recv_timeout(timeout), Ok("first"));
        assert_eq!(arrived.recv_timeout(timeout), Ok("second"));

        // Busy with a task that takes arrivals at every turn, as sessions do: never asleep,
        // and what is queued runs without a wake-up.
        handle.spawn(async move {
            loop {
                tokio::task::yield_now().await;
                inbox.take();
            }
        });
        wait_until("the thread is awake", || !is_asleep(inbox));
        let sender = ran.clone();
        assert!(!inbox.queue(Box::new(move || sender.send("third").unwrap())));
        assert_eq!(arrived.recv_timeout(timeout), Ok("third"));
    }

    #[test]
    fn no_arrival_is_lost_to_a_thread_falling_asleep() {
        let inbox: &'static Inbox = Box::leak(Box::new(Inbox::new()));
        let (handle, _stop) = receiving_thread(inbox);
        let started = Arc::new(AtomicUsize::new(0));
        let (mut wakes, arrivals) = (0, 20_000);
        for n in 0..arrivals {
            let counter = Arc::clone(&started);
            if inbox.queue(Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })) {
                wakes += 1;
                handle.spawn(async move {
                    inbox.take();
                });
            }
            // Each arrival must start without the help of a later one (which would wake the
            // thread if an earlier wake-up was lost).
            let deadline = Instant::now() + Duration::from_secs(10);
            while started.load(Ordering::SeqCst) <= n {
                assert!(Instant::now() < deadline, "arrival {n} never started");
                std::hint::spin_loop();
            }
            // Vary the gap, so that arrivals meet the thread in every phase of falling
            // asleep after the last one.
            for _ in 0..(n % 128) * 8 {
                std::hint::spin_loop();
            }
        }
        assert!(wakes > 0, "the thread slept between some arrivals");
    }

    #[test]
    fn an_http_connection_task_fits_in_512_bytes() {
        fn counted_size<T>(_: fn(Box<Session>) -> T) -> usize {
            std::mem::size_of::<Counted<T>>()
        }
        // tokio's task: a 32-byte header, the scheduler's handle and the task id (16), the
        // future in a stage with an 8-byte tag, a 48-byte trailer.
        let task = 32 + 16 + 8 + counted_size(Session::run_http) + 48;
        // Unoptimized builds keep a few more temporaries across suspend points.
        let limit = if cfg!(debug_assertions) { 520 } else { 512 };
        assert!(task <= limit, "an HTTP connection's task is {task} bytes");
    }

    #[test]
    fn the_thread_with_fewest_sessions_wins_and_ties_stay_on_the_lowest() {
        assert_eq!(least_loaded([0, 0].into_iter()), 0);
        assert_eq!(least_loaded([1, 0].into_iter()), 1);
        assert_eq!(least_loaded([1, 1, 1].into_iter()), 0);
        assert_eq!(least_loaded([3, 2, 2].into_iter()), 1);
        assert_eq!(least_loaded([5, 9, 0, 0].into_iter()), 2);
        assert_eq!(least_loaded(std::iter::empty()), 0);
    }

    #[test]
    fn alternating_arrivals_alternate_threads() {
        // Sessions arriving one after another and staying: 0, 1, 0, 1, ...
        let mut load = [0u32; 2];
        let chosen: Vec<usize> = (0..6)
            .map(|_| {
                let index = least_loaded(load.iter().copied());
                load[index] += 1;
                index
            })
            .collect();
        assert_eq!(chosen, [0, 1, 0, 1, 0, 1]);
    }
}
