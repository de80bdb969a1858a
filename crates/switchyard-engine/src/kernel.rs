//! Forwarding inside the kernel (`option kernel-forward`, a Switchyard extension): a TCP
//! session's two sockets go into a BPF sockhash whose `sk_skb` verdict program sends what
//! one socket receives out of the other. No byte crosses user space, and the process is not
//! woken per message: the sockets leave the event loop while the kernel forwards (the kernel
//! signals a socket's reader after every message it redirects), and the session watches
//! them for a FIN or an error only (`watch`), besides the inactivity timeout. On loopback,
//! pgbench -S keeps 0.80 of a direct connection's rate against 0.63 in user space. Short
//! sessions and bulk flows cost less in user space (splice), so a session only moves here
//! once it has settled into small request/response turns (`session.rs`); it is an option
//! (docs/performance.md, "In-kernel forwarding").
//!
//! What changes against the user-space relay (`forward`):
//! - byte counts come from the kernel (`TCP_INFO`), added to the stats every second while
//!   the session carries data (less often while it is idle) and at its end, not per read;
//! - inactivity is the time since either socket last received data (`tcpi_last_data_recv`);
//! - a FIN is passed on once everything received before it has been queued on the other
//!   socket (the kernel's counts compared; checked after 1 ms while one waits, then less
//!   often while nothing moves).
//!
//! The program is fifteen instructions, assembled here: a BPF toolchain (clang, or aya's
//! bpf-linker on nightly Rust) for that is not worth its weight in the build.
//!
//! Ordering. Bytes that reached a socket before it entered the map wait in its receive
//! queue, and the kernel hands them to the program, in order, at the next "data ready"
//! signal. Both sockets are gated (`SO_RCVLOWAT` at its maximum: no signal) while they enter
//! the map one after the other, and released after (setting `SO_RCVLOWAT` back signals at
//! once), so no byte meets a half-built pair. A FIN still signals through the gate; what it
//! carries then lands on the receiving socket itself (the program's fallback), is read here
//! and written on: nothing can follow a FIN, so nothing overtakes it.
//!
//! FINs. The kernel hands the program a FIN as a packet without data. Redirected, it broke
//! the pair (Linux 6.18: the socket it was sent to stopped forwarding the other way, so a
//! server could no longer answer a client that had shut its side). Left on its socket, it
//! broke that socket's sending when bytes for it were still queued in the kernel (the FIN
//! queues behind them, and the kernel's worker fails on a packet without data: `EPIPE` on
//! the socket, the rest of the other direction dropped). So the program drops such packets:
//! the FIN is in the socket's state already, where the process sees it and passes it on
//! itself, once the bytes before it are out.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::forward::{shutdown_write, ByteSink, Ending, Limits, Side, Transferred};

mod watch;

/// A socket while the kernel forwards it: out of the event loop.
pub(crate) type Socket = std::net::TcpStream;

/// How soon a side that sent its FIN is checked for its last bytes to have been queued on
/// the other socket (the kernel gives no signal for it); the wait doubles while nothing
/// moves (a peer that does not read), up to `DRAIN_CHECK_MAX`.
const DRAIN_CHECK: Duration = Duration::from_millis(1);
const DRAIN_CHECK_MAX: Duration = Duration::from_millis(32);

/// How soon the kernel's byte counts of a session that carries data are read again for the
/// stats (the kernel forwards without telling the process); while nothing moves, the wait
/// doubles, up to `STATS_REFRESH_MAX`: an idle session costs a wake-up every 16 s, and its
/// counters lag at most that much once it carries data again.
const STATS_REFRESH: Duration = Duration::from_secs(1);
const STATS_REFRESH_MAX: Duration = Duration::from_secs(16);

/// Bytes the program left on a socket (a FIN racing the pair's set-up) that were read and
/// written on in user space.
static PASSED: AtomicU64 = AtomicU64::new(0);

/// The process's sockhash and the verdict program attached to it; `None` if the kernel
/// refused them (no `CAP_BPF`/`CAP_NET_ADMIN`, or no sockmap support): sessions then use
/// the user-space relay.
struct Redirector {
    map: OwnedFd,
    /// Attached to the map, it lives as long as the map; kept open for clarity only.
    _program: OwnedFd,
}

static REDIRECTOR: OnceLock<Option<Redirector>> = OnceLock::new();

/// The redirector, built at the first call (`capacity`: sockets the map can hold).
fn redirector(capacity: u32) -> Option<&'static Redirector> {
    REDIRECTOR
        .get_or_init(|| match Redirector::new(capacity) {
            Ok(redirector) => Some(redirector),
            Err(error) => {
                tracing::warn!(%error, "option kernel-forward: the kernel refused the BPF sockhash; sessions are forwarded in user space");
                None
            }
        })
        .as_ref()
}

impl Redirector {
    fn new(capacity: u32) -> io::Result<Self> {
        let map = bpf::create_sockhash(capacity.max(64))?;
        let program = bpf::load_verdict(&map)?;
        bpf::attach_verdict(&map, &program)?;
        Ok(Redirector {
            map,
            _program: program,
        })
    }
}

/// What became of a session's two sockets asked to be forwarded in the kernel.
pub(crate) enum Link {
    /// In the kernel's hands, out of the process's event loop: run it.
    Linked(Box<Linked>),
    /// Nothing changed (no BPF, or the kernel refused the pair): relay them in user space.
    Refused(TcpStream, TcpStream),
    /// A socket could not be registered with the event loop again; the session is over.
    Lost,
}

/// Puts `client` and `server` in the kernel's hands. Their registrations with the process's
/// event loop are dropped first: the kernel signals a socket's reader after each message it
/// redirects, and a registered socket woke its thread ~0.4 times per message. The session
/// then watches both only for a FIN or an error (`EPOLLRDHUP`), in its thread's epoll set
/// (`watch`).
///
/// `capacity`: sockets the process may forward this way at once (the map's size, set by
/// the first session).
pub(crate) fn link(client: TcpStream, server: TcpStream, capacity: u32) -> Link {
    let Some(redirector) = redirector(capacity) else {
        return Link::Refused(client, server);
    };
    let (client, server) = match (client.into_std(), server.into_std()) {
        (Ok(client), Ok(server)) => (client, server),
        _ => return Link::Lost,
    };
    match Linked::new(redirector, client, server) {
        Ok(linked) => Link::Linked(Box::new(linked)),
        Err((error, client, server)) => {
            tracing::debug!(%error, "kernel forwarding not set up; relaying in user space");
            match (TcpStream::from_std(client), TcpStream::from_std(server)) {
                (Ok(client), Ok(server)) => Link::Refused(client, server),
                _ => Link::Lost,
            }
        }
    }
}

/// One direction: whether its sender's FIN was seen, and passed on.
#[derive(Default)]
struct Flow {
    fin_seen: bool,
    shut: bool,
}

impl Flow {
    /// FIN seen, not yet passed on: waiting for the kernel to queue the last bytes.
    fn draining(&self) -> bool {
        self.fin_seen && !self.shut
    }
}

/// A session forwarded by the kernel. Dropped, it takes its sockets out of the map and
/// closes them (resetting those [`Linked::reset_on_close`] names).
pub(crate) struct Linked {
    /// First field: out of the map before the sockets close.
    pair: Pair,
    /// Both sockets in this thread's epoll set, for a FIN or an error only.
    watch: watch::Watch,
    client: Socket,
    server: Socket,
    /// Client to server.
    up: Flow,
    /// Server to client.
    down: Flow,
    /// What the stats were given so far.
    counted: Transferred,
    /// The next check of a FIN waiting for its last bytes (see [`DRAIN_CHECK`]).
    drain_check: Duration,
    /// The next reading of the counts for the stats (see [`STATS_REFRESH`]).
    stats_refresh: Duration,
    reset: [bool; 2],
}

impl Linked {
    fn new(
        redirector: &'static Redirector,
        client: Socket,
        server: Socket,
    ) -> Result<Linked, (io::Error, Socket, Socket)> {
        let linked = Pair::link(redirector, &client, &server).and_then(|pair| {
            let watch = watch::Watch::new(&client, &server)?;
            Ok((pair, watch))
        });
        match linked {
            Ok((pair, watch)) => Ok(Linked {
                pair,
                watch,
                client,
                server,
                up: Flow::default(),
                down: Flow::default(),
                counted: Transferred::default(),
                drain_check: DRAIN_CHECK,
                stats_refresh: STATS_REFRESH,
                reset: [false; 2],
            }),
            Err(error) => Err((error, client, server)),
        }
    }

    /// Closes the client's (`client`) and the server's (`server`) socket with a reset
    /// rather than a FIN when this is dropped.
    pub(crate) fn reset_on_close(&mut self, client: bool, server: bool) {
        self.reset = [client, server];
    }

    /// Forwards until both directions are closed, one side fails or the inactivity timeout
    /// expires; the bytes carried each way.
    pub(crate) async fn run(
        &mut self,
        limits: Limits,
        sink: &dyn ByteSink,
    ) -> (Ending, Transferred) {
        let ending = self.forward(limits, sink).await;
        (ending, self.carried(sink))
    }

    /// Bytes carried each way so far (the stats are brought up to date).
    pub(crate) fn carried(&mut self, sink: &dyn ByteSink) -> Transferred {
        match (counts(&self.client), counts(&self.server)) {
            (Ok(client), Ok(server)) => self.count(sink, &client, &server),
            _ => self.counted,
        }
    }

    async fn forward(&mut self, limits: Limits, sink: &dyn ByteSink) -> Ending {
        loop {
            // One reading of the kernel's counts per turn, for the stats, the FINs and the
            // inactivity timeout.
            let client = counts(&self.client).map_err(|_| Ending::Aborted(Side::Client));
            let server = counts(&self.server).map_err(|_| Ending::Aborted(Side::Server));
            let (client, server) = match (client, server) {
                (Ok(client), Ok(server)) => (client, server),
                (Err(ending), _) | (_, Err(ending)) => return ending,
            };
            let before = self.counted;
            let now = self.count(sink, &client, &server);
            if now != before {
                self.drain_check = DRAIN_CHECK;
                self.stats_refresh = STATS_REFRESH;
            } else {
                self.stats_refresh = (self.stats_refresh * 2).min(STATS_REFRESH_MAX);
            }
            if let Err(ending) = self.pass_fins(&client, &server) {
                return ending;
            }
            if self.up.shut && self.down.shut {
                return Ending::Closed;
            }
            let half_closed = self.up.fin_seen || self.down.fin_seen;
            let limit = limits.current(half_closed);
            for (socket, side) in [(&self.client, Side::Client), (&self.server, Side::Server)] {
                if !matches!(socket.take_error(), Ok(None)) {
                    return Ending::Aborted(side);
                }
            }
            let idle = client.idle.min(server.idle);
            if let Some((limit, side)) = limit {
                if idle >= limit {
                    return Ending::TimedOut(side);
                }
            }
            // The next turn: the stats' refresh, the inactivity deadline, or a FIN's check.
            let mut wait = self.stats_refresh;
            if let Some((limit, _)) = limit {
                wait = wait.min(limit - idle);
            }
            if self.up.draining() || self.down.draining() {
                wait = wait.min(self.drain_check);
                self.drain_check = (self.drain_check * 2).min(DRAIN_CHECK_MAX);
            }
            let watching = !(self.up.fin_seen && self.down.fin_seen);
            let reported = tokio::select! {
                sides = std::future::poll_fn(|cx| self.watch.poll_reported(cx)), if watching => sides,
                () = tokio::time::sleep(wait) => [false; 2],
            };
            for (side, woken) in [(Side::Client, reported[0]), (Side::Server, reported[1])] {
                if woken {
                    if let Err(ending) = self.on_event(side) {
                        return ending;
                    }
                }
            }
        }
    }

    /// A FIN or an error on `side`'s socket: what the program left there is written on
    /// (see the module's "Ordering"), a FIN noted, an error ends the session.
    fn on_event(&mut self, side: Side) -> Result<(), Ending> {
        let (from, to, flow) = match side {
            Side::Client => (&self.client, &self.server, &mut self.up),
            Side::Server => (&self.server, &self.client, &mut self.down),
        };
        if flow.fin_seen {
            return Ok(());
        }
        match read_through(from, to) {
            Ok(Read::Fin) => flow.fin_seen = true,
            Ok(Read::Open) => {}
            Err(Failed(blame)) => {
                return Err(Ending::Aborted(if blame { side } else { side.other() }))
            }
        }
        Ok(())
    }

    /// Shuts the write side of each socket whose peer sent its FIN, once the kernel has
    /// queued everything received before it.
    fn pass_fins(&mut self, client: &Counts, server: &Counts) -> Result<(), Ending> {
        if self.up.draining() {
            let (received, queued) = self.pair.upstream(client, server, &self.up);
            if queued >= received {
                shutdown_write(&self.server).map_err(|_| Ending::Aborted(Side::Server))?;
                self.up.shut = true;
            }
        }
        if self.down.draining() {
            let (received, queued) = self.pair.downstream(client, server, &self.down);
            if queued >= received {
                shutdown_write(&self.client).map_err(|_| Ending::Aborted(Side::Client))?;
                self.down.shut = true;
            }
        }
        Ok(())
    }

    /// Bytes carried so far; what the stats have not seen yet is added to them.
    fn count(&mut self, sink: &dyn ByteSink, client: &Counts, server: &Counts) -> Transferred {
        let (_, upstream) = self.pair.upstream(client, server, &self.up);
        let (_, downstream) = self.pair.downstream(client, server, &self.down);
        if upstream > self.counted.upstream {
            sink.add_upstream(upstream - self.counted.upstream);
            self.counted.upstream = upstream;
        }
        if downstream > self.counted.downstream {
            sink.add_downstream(downstream - self.counted.downstream);
            self.counted.downstream = downstream;
        }
        self.counted
    }
}

impl Drop for Linked {
    fn drop(&mut self) {
        for (socket, reset) in [(&self.client, self.reset[0]), (&self.server, self.reset[1])] {
            if reset {
                let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
            }
        }
    }
}

/// What a readable socket held.
enum Read {
    /// Its peer's FIN: nothing more will come.
    Fin,
    /// Still open (bytes the program left on the socket were written on).
    Open,
}

/// A read or write failed; `true` if the socket read from is to blame.
struct Failed(bool);

/// Takes what the program left on `from` (see the module's "Ordering") and writes it to
/// `to`; tells a FIN apart. Blocking writes are not needed: these are the few bytes that
/// came with a FIN, and a peer's full buffer is then treated as a failure of that peer.
fn read_through(from: &Socket, to: &Socket) -> Result<Read, Failed> {
    let mut buffer = [0u8; 4096];
    loop {
        match (&mut &*from).read(&mut buffer) {
            Ok(0) => return Ok(Read::Fin),
            Ok(n) => {
                PASSED.fetch_add(n as u64, Ordering::Relaxed);
                let mut written = 0;
                while written < n {
                    match (&mut &*to).write(&buffer[written..n]) {
                        Ok(w) => written += w,
                        Err(_) => return Err(Failed(false)),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Open),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Failed(true)),
        }
    }
}

/// What the kernel says of one socket at one moment.
struct Counts {
    /// Bytes received from the peer, its FIN included.
    received: u64,
    /// Bytes ever queued for sending (see [`queued`]), this side's FIN included.
    queued: u64,
    /// Since the socket last received data.
    idle: Duration,
}

fn counts(socket: &Socket) -> io::Result<Counts> {
    let info = tcp_info(socket)?;
    Ok(Counts {
        received: info.bytes_received,
        queued: queued_after(&info, socket)?,
        idle: Duration::from_millis(u64::from(info.last_data_recv_ms)),
    })
}

/// The two sockets of a session in the map, and the kernel's byte counts at that moment.
/// Dropped (the session ended, or was killed), it takes them out of the map: what arrives
/// from then on stays on its socket.
struct Pair {
    redirector: &'static Redirector,
    client_cookie: u64,
    server_cookie: u64,
    /// Client bytes user space had read before (a PROXY header): received, never forwarded.
    client_consumed: u64,
    server_consumed: u64,
    /// Bytes queued on each socket before (a `send-proxy` header): sent, never forwarded.
    client_queued: u64,
    server_queued: u64,
}

impl Pair {
    /// Puts both sockets in the map, each keyed by the other's cookie, gated while it is
    /// half-built (see the module's "Ordering").
    fn link(redirector: &'static Redirector, client: &Socket, server: &Socket) -> io::Result<Pair> {
        let gate = Gate::close(client, server)?;
        let client_cookie = socket_cookie(client)?;
        let server_cookie = socket_cookie(server)?;
        let pair = Pair {
            redirector,
            client_cookie,
            server_cookie,
            client_consumed: consumed(client)?,
            server_consumed: consumed(server)?,
            client_queued: queued(client)?,
            server_queued: queued(server)?,
        };
        // A failure drops `pair`, which takes out what went in.
        bpf::insert(&redirector.map, client_cookie, server.as_fd())?;
        bpf::insert(&redirector.map, server_cookie, client.as_fd())?;
        gate.open()?;
        Ok(pair)
    }

    /// Client bytes received and queued on the server socket since the pair was linked.
    fn upstream(&self, client: &Counts, server: &Counts, flow: &Flow) -> (u64, u64) {
        carried(
            (client, self.client_consumed),
            (server, self.server_queued),
            flow,
        )
    }

    /// Server bytes received and queued on the client socket since the pair was linked.
    fn downstream(&self, client: &Counts, server: &Counts, flow: &Flow) -> (u64, u64) {
        carried(
            (server, self.server_consumed),
            (client, self.client_queued),
            flow,
        )
    }
}

/// One direction's bytes since the pair was linked: received on the sender's socket (not
/// counting what user space read before) and queued on the receiver's (not counting what
/// user space wrote before). A FIN takes a sequence number and the kernel counts it as a
/// byte, on both sockets.
fn carried(
    (sender, consumed): (&Counts, u64),
    (receiver, queued): (&Counts, u64),
    flow: &Flow,
) -> (u64, u64) {
    (
        sender
            .received
            .saturating_sub(consumed + u64::from(flow.fin_seen)),
        receiver
            .queued
            .saturating_sub(queued + u64::from(flow.shut)),
    )
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = bpf::remove(&self.redirector.map, self.client_cookie);
        let _ = bpf::remove(&self.redirector.map, self.server_cookie);
    }
}

/// Both sockets' "data ready" signal held back while the pair is half in the map.
struct Gate<'a> {
    sockets: [&'a Socket; 2],
}

impl<'a> Gate<'a> {
    fn close(client: &'a Socket, server: &'a Socket) -> io::Result<Gate<'a>> {
        let gate = Gate {
            sockets: [client, server],
        };
        for socket in gate.sockets {
            set_rcvlowat(socket, i32::MAX)?;
        }
        Ok(gate)
    }

    /// Releases the signal: the kernel runs the program at once over what waited.
    fn open(self) -> io::Result<()> {
        let sockets = self.sockets;
        std::mem::forget(self);
        for socket in sockets {
            set_rcvlowat(socket, 1)?;
        }
        Ok(())
    }
}

impl Drop for Gate<'_> {
    /// Set-up failed half-way: the sockets go back to their plain signal.
    fn drop(&mut self) {
        for socket in self.sockets {
            let _ = set_rcvlowat(socket, 1);
        }
    }
}

fn set_rcvlowat(socket: &Socket, bytes: i32) -> io::Result<()> {
    setsockopt(socket, libc::SOL_SOCKET, libc::SO_RCVLOWAT, &bytes)
}

fn setsockopt<T>(socket: &Socket, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` and its exact size is passed.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel's id of the socket, which the program looks its peer up by.
fn socket_cookie(socket: &Socket) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut length = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` is a u64 and `length` says so.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut length,
        )
    };
    if done == 0 {
        Ok(cookie)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes ever queued for sending on `socket`: acknowledged plus still queued.
fn queued(socket: &Socket) -> io::Result<u64> {
    queued_after(&tcp_info(socket)?, socket)
}

/// [`queued`], with `info` read from `socket` just before.
fn queued_after(info: &TcpInfo, socket: &Socket) -> io::Result<u64> {
    Ok(info.bytes_acked + u64::from(ioctl_count(socket, libc::TIOCOUTQ)?))
}

/// Bytes received from the peer that user space has read: received minus still queued.
/// Read twice around the queue so that a segment arriving in between is not miscounted.
fn consumed(socket: &Socket) -> io::Result<u64> {
    loop {
        let before = tcp_info(socket)?.bytes_received;
        let waiting = ioctl_count(socket, libc::FIONREAD)?;
        if tcp_info(socket)?.bytes_received == before {
            return Ok(before.saturating_sub(u64::from(waiting)));
        }
    }
}

fn ioctl_count(socket: &Socket, request: libc::Ioctl) -> io::Result<u32> {
    let mut count: libc::c_int = 0;
    // SAFETY: both requests write one int.
    if unsafe { libc::ioctl(socket.as_raw_fd(), request, &mut count) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(count).unwrap_or(0))
}

/// What is used of `struct tcp_info`.
struct TcpInfo {
    last_data_recv_ms: u32,
    bytes_acked: u64,
    bytes_received: u64,
}

/// `TCP_INFO`, read as bytes: the `libc` crate's struct stops before the byte counts.
fn tcp_info(socket: &Socket) -> io::Result<TcpInfo> {
    // Offsets in `struct tcp_info` (linux/tcp.h), stable since Linux 4.1.
    const LAST_DATA_RECV: usize = 52;
    const BYTES_ACKED: usize = 120;
    const BYTES_RECEIVED: usize = 128;
    let mut raw = [0u8; 136];
    let mut length = raw.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `length` bytes into `raw`.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            raw.as_mut_ptr().cast(),
            &mut length,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    if (length as usize) < raw.len() {
        return Err(io::Error::other(
            "TCP_INFO without byte counts (Linux < 4.1)",
        ));
    }
    let u32_at = |at: usize| u32::from_ne_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    let u64_at = |at: usize| u64::from(u32_at(at)) | u64::from(u32_at(at + 4)) << 32;
    Ok(TcpInfo {
        last_data_recv_ms: u32_at(LAST_DATA_RECV),
        bytes_acked: u64_at(BYTES_ACKED),
        bytes_received: u64_at(BYTES_RECEIVED),
    })
}

/// The `bpf(2)` calls used, on raw attribute blocks (`union bpf_attr`, zero-filled).
mod bpf {
    use super::*;

    const MAP_CREATE: libc::c_long = 0;
    const MAP_UPDATE_ELEM: libc::c_long = 2;
    const MAP_DELETE_ELEM: libc::c_long = 3;
    const PROG_LOAD: libc::c_long = 5;
    const PROG_ATTACH: libc::c_long = 8;
    const MAP_TYPE_SOCKHASH: u32 = 18;
    const PROG_TYPE_SK_SKB: u32 = 14;
    const SK_SKB_VERDICT: u32 = 38;
    const PSEUDO_MAP_FD: u8 = 1;
    const FUNC_GET_SOCKET_COOKIE: i32 = 46;
    const FUNC_SK_REDIRECT_HASH: i32 = 72;
    /// `union bpf_attr` is larger; the kernel accepts any size with zeros past what it knows.
    const ATTR_SIZE: usize = 128;

    struct Attr([u64; ATTR_SIZE / 8]);

    impl Attr {
        fn new() -> Self {
            Attr([0; ATTR_SIZE / 8])
        }

        fn u32_at(&mut self, offset: usize, value: u32) -> &mut Self {
            let bytes = bytemuck_bytes(&mut self.0);
            bytes[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
            self
        }

        fn u64_at(&mut self, offset: usize, value: u64) -> &mut Self {
            let bytes = bytemuck_bytes(&mut self.0);
            bytes[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
            self
        }

        fn call(&mut self, command: libc::c_long) -> io::Result<libc::c_long> {
            // SAFETY: the attribute block is ATTR_SIZE bytes, as passed; pointers in it
            // (keys, values, instructions) outlive the call.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    command,
                    self.0.as_mut_ptr(),
                    ATTR_SIZE as libc::c_uint,
                )
            };
            if result < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(result)
            }
        }

        fn call_fd(&mut self, command: libc::c_long) -> io::Result<OwnedFd> {
            let fd = RawFd::try_from(self.call(command)?).map_err(io::Error::other)?;
            // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    }

    fn bytemuck_bytes(words: &mut [u64; ATTR_SIZE / 8]) -> &mut [u8] {
        // SAFETY: a u64 array is valid as bytes, same length in bytes, same lifetime.
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), ATTR_SIZE) }
    }

    /// A sockhash keyed by socket cookie (u64), valued by socket (given as a u32 fd).
    pub(super) fn create_sockhash(capacity: u32) -> io::Result<OwnedFd> {
        Attr::new()
            .u32_at(0, MAP_TYPE_SOCKHASH)
            .u32_at(4, 8)
            .u32_at(8, 4)
            .u32_at(12, capacity)
            .call_fd(MAP_CREATE)
    }

    /// One instruction: opcode, registers (dst low nibble, src high), offset, immediate.
    fn insn(code: u8, dst: u8, src: u8, offset: i16, imm: i32) -> u64 {
        let bytes = [[code, (src << 4) | dst], offset.to_le_bytes()].concat();
        let mut all = [0u8; 8];
        all[..4].copy_from_slice(&bytes);
        all[4..].copy_from_slice(&imm.to_le_bytes());
        u64::from_le_bytes(all)
    }

    /// The verdict: send the packet out of the socket stored under this socket's cookie;
    /// without one (a pair being built or taken apart), keep it on this socket (SK_PASS)
    /// rather than drop it. A packet without data (a FIN, see the module's "FINs") is
    /// dropped: the FIN is already in the socket's state, where the process sees it.
    pub(super) fn verdict_program(map: RawFd) -> Vec<u64> {
        vec![
            insn(0x61, 2, 1, 0, 0),                      // r2 = skb->len
            insn(0xb7, 0, 0, 0, 0),                      // r0 = SK_DROP
            insn(0x15, 2, 0, 12, 0),                     // if r2 == 0: exit
            insn(0xbf, 6, 1, 0, 0),                      // r6 = r1 (the packet)
            insn(0x85, 0, 0, 0, FUNC_GET_SOCKET_COOKIE), // r0 = its socket's cookie
            insn(0x7b, 10, 0, -8, 0),                    // *(u64 *)(r10 - 8) = r0
            insn(0xbf, 1, 6, 0, 0),                      // r1 = the packet
            insn(0x18, 2, PSEUDO_MAP_FD, 0, map),        // r2 = the map (two slots)
            insn(0, 0, 0, 0, 0),
            insn(0xbf, 3, 10, 0, 0),                    // r3 = r10
            insn(0x07, 3, 0, 0, -8),                    // r3 -= 8: the key
            insn(0xb7, 4, 0, 0, 0),                     // r4 = 0: out of the peer (egress)
            insn(0x85, 0, 0, 0, FUNC_SK_REDIRECT_HASH), // r0 = redirect(...)
            insn(0x55, 0, 0, 1, 0),                     // if r0 != SK_DROP: done
            insn(0xb7, 0, 0, 0, 1),                     // r0 = SK_PASS
            insn(0x95, 0, 0, 0, 0),                     // exit
        ]
    }

    pub(super) fn load_verdict(map: &OwnedFd) -> io::Result<OwnedFd> {
        let program = verdict_program(map.as_raw_fd());
        let license = b"GPL\0";
        let mut log = vec![0u8; 4096];
        let loaded = Attr::new()
            .u32_at(0, PROG_TYPE_SK_SKB)
            .u32_at(4, program.len() as u32)
            .u64_at(8, program.as_ptr() as u64)
            .u64_at(16, license.as_ptr() as u64)
            .u32_at(24, 1)
            .u32_at(28, log.len() as u32)
            .u64_at(32, log.as_mut_ptr() as u64)
            .call_fd(PROG_LOAD);
        loaded.map_err(|error| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]);
            io::Error::new(
                error.kind(),
                format!("{error}; verifier: {}", verifier.trim()),
            )
        })
    }

    pub(super) fn attach_verdict(map: &OwnedFd, program: &OwnedFd) -> io::Result<()> {
        Attr::new()
            .u32_at(0, map.as_raw_fd() as u32)
            .u32_at(4, program.as_raw_fd() as u32)
            .u32_at(8, SK_SKB_VERDICT)
            .call(PROG_ATTACH)
            .map(drop)
    }

    /// Stores `socket` under `key`: it enters the map (its packets now go to the program).
    pub(super) fn insert(
        map: &OwnedFd,
        key: u64,
        socket: std::os::fd::BorrowedFd<'_>,
    ) -> io::Result<()> {
        let value = socket.as_raw_fd() as u32;
        Attr::new()
            .u32_at(0, map.as_raw_fd() as u32)
            .u64_at(8, &key as *const u64 as u64)
            .u64_at(16, &value as *const u32 as u64)
            .call(MAP_UPDATE_ELEM)
            .map(drop)
    }

    pub(super) fn remove(map: &OwnedFd, key: u64) -> io::Result<()> {
        Attr::new()
            .u32_at(0, map.as_raw_fd() as u32)
            .u64_at(8, &key as *const u64 as u64)
            .call(MAP_DELETE_ELEM)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[derive(Default)]
    struct Counted {
        up: AtomicU64,
        down: AtomicU64,
    }

    impl ByteSink for Counted {
        fn add_upstream(&self, bytes: u64) {
            self.up.fetch_add(bytes, Ordering::Relaxed);
        }
        fn add_downstream(&self, bytes: u64) {
            self.down.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The proxy's two sockets forwarded by the kernel until the session ends.
    async fn relay(
        client: TcpStream,
        server: TcpStream,
        limits: Limits,
        sink: &Counted,
    ) -> (Ending, Transferred) {
        match link(client, server, 64) {
            Link::Linked(mut linked) => linked.run(limits, sink).await,
            Link::Refused(..) | Link::Lost => panic!("kernel forwarding refused (needs root)"),
        }
    }

    /// A connected pair: (accepted side, connecting side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (accepted.unwrap().0, connected.unwrap())
    }

    fn limits(client: Option<Duration>) -> Limits {
        Limits {
            client,
            server: None,
            client_fin: None,
            server_fin: None,
            tunnel: None,
        }
    }

    /// Client and server ends, and the proxy's two sockets, with `before` sent by the client
    /// and `greeting` by the server before the proxy links them.
    async fn session(
        before: &[u8],
        greeting: &[u8],
    ) -> (TcpStream, TcpStream, TcpStream, TcpStream) {
        let (proxy_client, mut client) = pair().await;
        let (mut server, proxy_server) = pair().await;
        client.write_all(before).await.unwrap();
        server.write_all(greeting).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        (client, proxy_client, proxy_server, server)
    }

    #[tokio::test]
    async fn forwards_both_ways_in_order_and_passes_each_fin_after_the_last_byte() {
        let (mut client, proxy_client, proxy_server, mut server) =
            session(b"early bytes, ", b"server speaks first; ").await;
        let sink = Counted::default();
        let passed_before = PASSED.load(Ordering::Relaxed);
        let relay = async { relay(proxy_client, proxy_server, limits(None), &sink).await };
        let peers = async {
            let mut greeting = [0u8; 21];
            client.read_exact(&mut greeting).await.unwrap();
            assert_eq!(&greeting, b"server speaks first; ");
            let mut early = [0u8; 13];
            server.read_exact(&mut early).await.unwrap();
            assert_eq!(&early, b"early bytes, ");
            // Request/response turns, then a bulk burst the receiver reads late.
            for turn in 0..200u32 {
                let query = format!("query {turn};");
                client.write_all(query.as_bytes()).await.unwrap();
                let mut got = vec![0u8; query.len()];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(got, query.as_bytes());
                server.write_all(&turn.to_be_bytes()).await.unwrap();
                let mut answer = [0u8; 4];
                client.read_exact(&mut answer).await.unwrap();
                assert_eq!(u32::from_be_bytes(answer), turn);
            }
            let bulk: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
            let (mut server_read, mut server_write) = server.split();
            let send = async {
                client.write_all(&bulk).await.unwrap();
                client.shutdown().await.unwrap();
            };
            let receive = async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut got = Vec::new();
                server_read.read_to_end(&mut got).await.unwrap();
                assert!(
                    got == bulk,
                    "bulk bytes differ: {} of {}",
                    got.len(),
                    bulk.len()
                );
                server_write.write_all(b"bye").await.unwrap();
                server_write.shutdown().await.unwrap();
            };
            tokio::join!(send, receive);
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"bye");
        };
        let ((ending, transferred), ()) = tokio::join!(relay, peers);
        assert_eq!(ending, Ending::Closed);
        let up = (0..200)
            .map(|t: u32| format!("query {t};").len() as u64)
            .sum::<u64>();
        assert_eq!(transferred.upstream, 13 + up + 4_000_000);
        assert_eq!(transferred.downstream, 21 + 200 * 4 + 3);
        assert_eq!(sink.up.load(Ordering::Relaxed), transferred.upstream);
        assert_eq!(sink.down.load(Ordering::Relaxed), transferred.downstream);
        // Only the FIN-time fallback may read in user space; nothing came that way here.
        assert_eq!(PASSED.load(Ordering::Relaxed), passed_before);
    }

    /// What `from` sent until its FIN, read within 2 s.
    async fn read_all(from: &mut TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), from.read_to_end(&mut all))
            .await
            .expect("no FIN within 2 s")
            .unwrap();
        all
    }

    /// `first` says `said` and shuts its side; `second` reads it all, still answers, and
    /// shuts too; both directions are closed through the relay.
    async fn close_after(first_is_client: bool, said: &[u8], answer: &[u8]) {
        let (client, proxy_client, proxy_server, server) = session(b"", b"").await;
        let sink = Counted::default();
        let (mut first, mut second) = if first_is_client {
            (client, server)
        } else {
            (server, client)
        };
        let peers = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            first.write_all(said).await.unwrap();
            first.shutdown().await.unwrap();
            assert_eq!(read_all(&mut second).await, said);
            second.write_all(answer).await.unwrap();
            second.shutdown().await.unwrap();
            assert_eq!(read_all(&mut first).await, answer);
        };
        let relayed = relay(proxy_client, proxy_server, limits(None), &sink);
        let ((ending, _), ()) = tokio::join!(relayed, peers);
        assert_eq!(ending, Ending::Closed);
    }

    #[tokio::test]
    async fn the_server_may_close_first() {
        close_after(false, b"bye", b"").await;
    }

    /// A FIN redirected by the program broke the other direction (see the module's "FINs").
    #[tokio::test]
    async fn the_server_still_answers_after_the_clients_fin() {
        close_after(true, b"hi", b"bye").await;
    }

    #[tokio::test]
    async fn an_idle_session_times_out_on_the_client_limit() {
        let (_client, proxy_client, proxy_server, _server) = session(b"", b"").await;
        let sink = Counted::default();
        let started = std::time::Instant::now();
        let (ending, _) = relay(
            proxy_client,
            proxy_server,
            limits(Some(Duration::from_millis(300))),
            &sink,
        )
        .await;
        assert_eq!(ending, Ending::TimedOut(Side::Client));
        let took = started.elapsed();
        // Idle since the sockets were connected, 20 ms before the relay started.
        assert!(took >= Duration::from_millis(260), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn a_reset_client_aborts_the_session() {
        let (client, proxy_client, proxy_server, _server) = session(b"x", b"").await;
        let sink = Counted::default();
        let reset = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            socket2::SockRef::from(&client)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(client);
        };
        let ((ending, _), ()) = tokio::join!(
            async { relay(proxy_client, proxy_server, limits(None), &sink).await },
            reset
        );
        assert_eq!(ending, Ending::Aborted(Side::Client));
    }

    #[test]
    fn the_program_is_accepted_by_this_kernel() {
        let map = bpf::create_sockhash(64).expect("sockhash (needs root)");
        let program = bpf::load_verdict(&map).expect("verdict program");
        bpf::attach_verdict(&map, &program).expect("attach");
    }
}
