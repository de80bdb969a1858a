//! FINs and errors of the sockets the kernel forwards, one epoll set per session thread.
//!
//! The sockets are out of the event loop while the kernel forwards (the kernel signals a
//! socket's reader after every message it redirects). Each is in this thread's set for
//! `EPOLLRDHUP` only (edge-triggered: a FIN or an error is reported once), and the set itself
//! is registered with the event loop; a task drains it and wakes the sessions concerned. One
//! set per thread rather than per session: a descriptor per session would count against the
//! open-files limit that `maxconn` is sized by.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::Socket;

/// Events taken from the set per `epoll_wait`.
const BATCH: usize = 64;

/// This thread's set and who waits on it.
struct Watcher {
    epoll: AsyncFd<OwnedFd>,
    sessions: Mutex<Slab<Entry>>,
}

/// A session's side of the set: what was reported for its two sockets, and its task.
#[derive(Default)]
struct Entry {
    /// [client, server]: reported since the session last looked.
    reported: [bool; 2],
    waker: Option<Waker>,
}

thread_local! {
    /// This thread's watcher and the task draining its set (a new one if that task ended:
    /// the runtime it ran on is gone, as between tests).
    static WATCHER: std::cell::RefCell<Option<(Arc<Watcher>, tokio::task::JoinHandle<()>)>> =
        const { std::cell::RefCell::new(None) };
}

fn watcher() -> io::Result<Arc<Watcher>> {
    WATCHER.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some((watcher, task)) = cell.as_ref() {
            if !task.is_finished() {
                return Ok(Arc::clone(watcher));
            }
        }
        // SAFETY: plain syscall; the descriptor is owned at once.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `epoll` was just created and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: the `AsyncFd` owns `epoll` from here, so it stays open and the same for
        // the registration's life.
        let epoll = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)?;
        let watcher = Arc::new(Watcher {
            epoll,
            sessions: Mutex::new(Slab::new()),
        });
        let task = tokio::spawn(drain(Arc::clone(&watcher)));
        *cell = Some((Arc::clone(&watcher), task));
        Ok(watcher)
    })
}

/// Takes the set's events as they come and wakes the sessions they are for.
async fn drain(watcher: Arc<Watcher>) {
    loop {
        let Ok(mut guard) = watcher.epoll.readable().await else {
            return;
        };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        // SAFETY: `events` has room for BATCH events; a zero timeout never blocks.
        let count = unsafe {
            libc::epoll_wait(
                guard.get_inner().as_raw_fd(),
                events.as_mut_ptr(),
                BATCH as i32,
                0,
            )
        };
        let count = usize::try_from(count).unwrap_or(0);
        if count < BATCH {
            guard.clear_ready();
        }
        let mut sessions = crate::lock(&watcher.sessions);
        for event in &events[..count] {
            let (key, side) = ((event.u64 / 2) as usize, (event.u64 % 2) as usize);
            if let Some(entry) = sessions.get_mut(key) {
                entry.reported[side] = true;
                if let Some(waker) = entry.waker.take() {
                    waker.wake();
                }
            }
        }
    }
}

/// A session's two sockets in this thread's set; taken out when dropped.
pub(super) struct Watch {
    watcher: Arc<Watcher>,
    key: usize,
    fds: [i32; 2],
}

impl Watch {
    pub(super) fn new(client: &Socket, server: &Socket) -> io::Result<Watch> {
        let watcher = watcher()?;
        let key = crate::lock(&watcher.sessions).insert(Entry::default());
        let mut watch = Watch {
            watcher,
            key,
            fds: [-1, -1],
        };
        for (side, socket) in [client, server].into_iter().enumerate() {
            let mut event = libc::epoll_event {
                events: (libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: (key * 2 + side) as u64,
            };
            // SAFETY: both descriptors are open; `event` is a valid epoll_event.
            let added = unsafe {
                libc::epoll_ctl(
                    watch.watcher.epoll.get_ref().as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    socket.as_raw_fd(),
                    &mut event,
                )
            };
            if added != 0 {
                return Err(io::Error::last_os_error());
            }
            watch.fds[side] = socket.as_raw_fd();
        }
        Ok(watch)
    }

    /// Which sockets ([client, server]) reported a FIN or an error since the last call;
    /// pending (the task woken on the next report) if none did.
    pub(super) fn poll_reported(&self, cx: &mut Context<'_>) -> Poll<[bool; 2]> {
        let mut sessions = crate::lock(&self.watcher.sessions);
        let Some(entry) = sessions.get_mut(self.key) else {
            return Poll::Pending;
        };
        if entry.reported != [false; 2] {
            return Poll::Ready(std::mem::take(&mut entry.reported));
        }
        match &entry.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => entry.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for fd in self.fds {
            if fd >= 0 {
                // SAFETY: the socket is still open (the session closes it after this); a
                // null event is accepted for EPOLL_CTL_DEL.
                unsafe {
                    libc::epoll_ctl(
                        self.watcher.epoll.get_ref().as_raw_fd(),
                        libc::EPOLL_CTL_DEL,
                        fd,
                        std::ptr::null_mut(),
                    );
                }
            }
        }
        crate::lock(&self.watcher.sessions).try_remove(self.key);
    }
}
