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
//! With `nbthread 1` nothing here runs: sessions are spawned where they are accepted.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio::runtime::Handle;

use crate::session::Session;

/// One thread's share of the sessions.
struct Thread {
    /// `None` for thread 0, the runtime the accept loops run on.
    runtime: Option<Handle>,
    sessions: AtomicU32,
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
        runtime: None,
        sessions: AtomicU32::new(0),
    });
    for index in 1..=extra {
        let runtime = runtime()?;
        threads.push(Thread {
            runtime: Some(runtime.handle().clone()),
            sessions: AtomicU32::new(0),
        });
        // The thread's own timer floor keeps it busy forever; its sessions are spawned
        // onto it from thread 0.
        std::thread::Builder::new()
            .name(format!("switchyard-{index}"))
            .spawn(move || {
                CURRENT.with(|current| current.set(index));
                runtime.spawn(crate::busy::run());
                runtime.block_on(crate::timer_floor())
            })?;
    }
    let _ = THREADS.set(threads);
    Ok(())
}

/// A session thread's runtime (the main thread's too): single-threaded, with I/O and timers,
/// yielding the CPU before it sleeps after a short burst of work (`park`).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::park::before_park)
        .on_thread_unpark(crate::park::after_unpark)
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
/// goes there as a short task of its own that registers the socket, builds the session and
/// spawns its task on that thread, as the accepting thread does: a task that carried the
/// session's future itself would keep, beside it, what it was built from (the closure's
/// captures, or a second copy of the future: 1,024 bytes per HTTP connection, twice the
/// task the accepting thread makes).
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
    let Some(runtime) = &thread.runtime else {
        start_here(client, make, Some(share));
        return;
    };
    // Boxed: the short task then holds a pointer, not the closure's captures.
    let pending = Box::new((client, make));
    runtime.spawn(async move {
        let (client, make) = *pending;
        start_here(client, make, Some(share));
    });
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
    use super::{least_loaded, Counted};
    use crate::session::Session;

    /// Every idle keep-alive connection is one such task: past 512 bytes tokio rounds it up
    /// to 640 (docs/performance.md).
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
