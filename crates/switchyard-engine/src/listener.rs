//! Listening sockets and the accept loop.
//!
//! The loop takes the global and frontend `maxconn` slots *before* calling `accept`, like
//! HAProxy: when a limit is reached, new connections wait in the kernel's backlog instead of
//! being accepted and then refused.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

use crate::session::Session;
use crate::state::{Frontend, Process};

/// The listening socket, registered with this thread's reactor for readability.
fn watch_readable(listener: std::net::TcpListener) -> io::Result<AsyncFd<std::net::TcpListener>> {
    // SAFETY: the `TcpListener` owns its descriptor and keeps it open, unchanged, until it is
    // dropped with the `AsyncFd`; it is only ever borrowed from there (`get_ref`).
    Ok(unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }?)
}

#[derive(Debug)]
pub struct Listener {
    /// Watched for readiness only: accepted sockets are not registered with this thread's
    /// reactor, since the thread that serves a connection may be another one.
    inner: AsyncFd<std::net::TcpListener>,
    /// `accept-proxy` on the `bind` line: every connection starts with a PROXY header.
    pub(crate) accept_proxy: bool,
    /// `ssl crt ...`: TLS is terminated here.
    pub(crate) tls: Option<crate::tls::TlsListener>,
}

impl Listener {
    /// Binds with `SO_REUSEADDR` (restart without waiting for TIME_WAIT) and the requested
    /// IPv6-only behaviour; `None` keeps the system default (`net.ipv6.bindv6only`).
    pub fn bind(
        addr: SocketAddr,
        backlog: u32,
        v6only: Option<bool>,
        reuse_port: bool,
    ) -> io::Result<Listener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        // As HAProxy: a new process (`-sf`) can bind while the old one still listens.
        socket.set_reuse_port(reuse_port)?;
        if addr.is_ipv6() {
            if let Some(only) = v6only {
                socket.set_only_v6(only)?;
            }
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        let inner = watch_readable(socket.into())?;
        Ok(Listener {
            inner,
            accept_proxy: false,
            tls: None,
        })
    }

    /// Takes over an already listening socket (one a previous engine shares on reload).
    pub fn from_socket(socket: Socket) -> io::Result<Listener> {
        socket.set_nonblocking(true)?;
        let inner = watch_readable(socket.into())?;
        Ok(Listener {
            inner,
            accept_proxy: false,
            tls: None,
        })
    }

    /// A second descriptor of the same listening socket.
    pub fn duplicate(&self) -> io::Result<Socket> {
        socket2::SockRef::from(self.inner.get_ref()).try_clone()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The next connection, non-blocking and close-on-exec (one `accept4`), registered with
    /// no reactor yet.
    async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.inner.readable().await?;
            let accepted = ready.try_io(|listener| {
                socket2::SockRef::from(listener.get_ref())
                    .accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            });
            // Err: the socket had nothing after all; its readiness is cleared, wait again.
            if let Ok(accepted) = accepted {
                let (socket, addr) = accepted?;
                let addr = addr.as_socket().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a TCP peer without an IP address",
                    )
                })?;
                return Ok((socket.into(), addr));
            }
        }
    }

    pub(crate) async fn accept_loop(
        self,
        process: Arc<Process>,
        frontend: Arc<Frontend>,
        mut stop: watch::Receiver<bool>,
    ) {
        // A listener bound to one address accepts only on it: no getsockname() per
        // connection then, only for wildcard binds.
        let bound = self
            .local_addr()
            .ok()
            .filter(|addr| !addr.ip().is_unspecified());
        loop {
            if *stop.borrow() {
                return;
            }
            let permits = tokio::select! {
                permits = take_permits(&process, &frontend) => permits,
                _ = stop.changed() => return,
            };
            let Some(permits) = permits else { return };
            let accepted = tokio::select! {
                accepted = self.accept() => accepted,
                _ = stop.changed() => return,
            };
            match accepted {
                Ok((client, client_addr)) => {
                    let socket = crate::pool::Descriptor::open();
                    // Counted from here, not once set up: a graceful stop waits for a
                    // connection still in its handshake or on its way to another thread.
                    let global = crate::state::ProcessSlot::admit(&process, permits.0);
                    // HAProxy counts connections as accepted, before any handshake.
                    let now_ms = crate::rate::now_ms();
                    process.connection_rate.add(now_ms);
                    frontend.counters.connection_rate.add(now_ms);
                    let local_addr = match bound {
                        Some(addr) => addr,
                        None => client.local_addr().unwrap_or(client_addr),
                    };
                    let process = Arc::clone(&process);
                    let frontend = Arc::clone(&frontend);
                    let (accepted_at, accepted) = (SystemTime::now(), Instant::now());
                    let (accept_proxy, tls) = (self.accept_proxy, self.tls.clone());
                    crate::workers::dispatch(client, move |client| Session {
                        process,
                        frontend,
                        client: Some(client),
                        client_addr,
                        local_addr,
                        accepted_at,
                        accepted,
                        accept_proxy,
                        tls,
                        _slots: (global, permits.1, socket),
                    });
                }
                Err(error) => {
                    // Running out of descriptors or memory: back off briefly instead of
                    // spinning; the permits are released by dropping them here.
                    tracing::warn!(frontend = %frontend.name, %error, "accept failed");
                    drop(permits);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn take_permits(
    process: &Process,
    frontend: &Frontend,
) -> Option<(
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
)> {
    let global = Arc::clone(&process.slots).acquire_owned().await.ok()?;
    let local = Arc::clone(&frontend.slots).acquire_owned().await.ok()?;
    Some((global, local))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the resulting soft limit.
pub(crate) fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}
