//! The stats socket server: HAProxy 2.6's CLI framing over TCP or a unix socket, generic over
//! an [`Executor`] that answers the commands touching the running configuration.
//!
//! Per connection, as HAProxy 2.6 does:
//! - the request is read one command at a time, up to the next LF or unescaped `;`
//!   ([`next_command`]), and each command is executed as soon as it is complete;
//! - non-interactive by default: commands are answered one after the other while more request
//!   bytes are buffered; once a command is answered and nothing is left, the connection is
//!   closed (so several lines sent at once are all answered);
//! - `prompt` toggles interactive mode: after each answer the server writes `"\n> "` instead of
//!   `"\n"` and waits for the next command; `quit` closes;
//! - `help`, `prompt`, `quit`, `operator`, `user` and `set timeout cli` are answered here; the
//!   rest goes to the executor with the session's level, after the level check ("Permission
//!   denied");
//! - a connection is closed after the timeout (default 10 s like `stats timeout`, changed per
//!   connection by `set timeout cli`) when the client sends nothing or stops reading answers;
//! - a command that does not fit in 16 KiB closes the connection without an answer, and so
//!   does the client's shutdown: a last command without its LF or `;` is never executed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};

pub use crate::command::Level;
use crate::command::{self, Command, MAX_LINE, PERMISSION_DENIED};

/// Runs the commands that act on the running configuration and returns HAProxy's answer
/// body (the server appends the post-command `"\n"` or prompt).
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, command: Command, level: Level) -> impl Future<Output = String> + Send;

    /// `_getsocks` on a unix socket with `expose-fd listeners`, at level admin: send the
    /// listening sockets over the connected unix stream `stream` (descriptor passing), for
    /// a process replacing this one (`-x`). `Ok(false)`: not supported.
    fn hand_over_listeners(&self, _stream: std::os::fd::RawFd) -> io::Result<bool> {
        Ok(false)
    }
}

/// The command a replacing process sends to fetch the listening sockets.
pub const GETSOCKS: &str = "_getsocks";

/// Where the stats socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// A unix socket file, created with `mode` (e.g. `0o600`) when given; a stale file (no one
    /// accepting on it) is replaced, a live one is an `AddrInUse` error.
    Unix { path: PathBuf, mode: Option<u32> },
    /// A TCP address. With `reuse_port` (HAProxy's default, off with `noreuseport`) a process
    /// replacing this one with `-sf` can bind the same address while this one drains.
    Tcp { addr: SocketAddr, reuse_port: bool },
}

/// Server settings beyond the level.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Level of every session accepted on this socket.
    pub level: Level,
    /// Idle timeout of a connection (HAProxy's `stats timeout`, default 10 s).
    pub timeout: Duration,
    /// Connections served at once; further clients wait in the kernel backlog.
    pub max_connections: usize,
    /// `expose-fd listeners`: a unix socket at level admin answers `_getsocks`.
    pub expose_listeners: bool,
}

impl ServeOptions {
    pub fn new(level: Level) -> Self {
        ServeOptions {
            level,
            timeout: DEFAULT_TIMEOUT,
            max_connections: 1024,
            expose_listeners: false,
        }
    }
}

/// HAProxy's default `stats timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound stats socket (bind first to learn the port of `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpListener),
    /// The listener, its path, and the file's (device, inode) when bound: at exit the file
    /// is removed only if it is still this socket (a replacing process may have taken the
    /// path over).
    Unix(UnixListener, PathBuf, Option<(u64, u64)>),
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Listener {
    pub async fn bind(bind: &Bind) -> io::Result<Listener> {
        Self::bind_with(bind, false).await
    }

    /// Like [`Listener::bind`], but a unix socket path a running process still serves is
    /// taken over: what a replacing process does (`-x`), the old one letting go soon after.
    pub async fn bind_replacing(bind: &Bind) -> io::Result<Listener> {
        Self::bind_with(bind, true).await
    }

    async fn bind_with(bind: &Bind, replace_live: bool) -> io::Result<Listener> {
        match bind {
            Bind::Tcp { addr, reuse_port } => Ok(Listener {
                inner: Inner::Tcp(bind_tcp(*addr, *reuse_port)?),
            }),
            Bind::Unix { path, mode } => {
                let l = bind_unix(path, *mode, replace_live).await?;
                Ok(Listener {
                    inner: Inner::Unix(l, path.clone(), file_identity(path)),
                })
            }
        }
    }

    /// The TCP address (None for a unix socket).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Tcp(l) => l.local_addr().ok(),
            Inner::Unix(..) => None,
        }
    }
}

/// Binds a control-plane TCP listener (this socket, the stats page) as the engine binds its
/// frontends: `SO_REUSEADDR`, and `SO_REUSEPORT` unless `noreuseport`, so that a replacing
/// process (`-sf`) can bind next to this one.
pub fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // As HAProxy: an IPv6 wildcard also accepts IPv4 unless the system says otherwise.
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

async fn bind_unix(path: &Path, mode: Option<u32>, replace_live: bool) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if !replace_live && tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running process", path.display()),
            ));
        }
    }
    // Like HAProxy: bind a temporary name, set its mode, then rename it over the final path,
    // so the socket never appears with the wrong permissions and a stale file is replaced.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let done = (|| {
        if let Some(mode) = mode {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// Serves `bind` at `level` until `stop` becomes true (or its sender is dropped). A unix socket
/// file is removed on return.
pub async fn serve<E: Executor>(
    bind: Bind,
    level: Level,
    executor: Arc<E>,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let listener = Listener::bind(&bind).await?;
    serve_listener(listener, ServeOptions::new(level), executor, stop).await
}

/// Serves an already bound [`Listener`].
pub async fn serve_listener<E: Executor>(
    listener: Listener,
    options: ServeOptions,
    executor: Arc<E>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.ok(),
            r = stop.changed() => { if r.is_err() { None } else { continue } }
        };
        let Some(permit) = permit else { break Ok(()) };
        let accepted = tokio::select! {
            a = accept(&listener.inner) => a,
            r = stop.changed() => { if r.is_err() || *stop.borrow() { break Ok(()) } continue }
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, "stats socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => break Err(e),
        };
        let exec = executor.clone();
        let opts = options.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = match conn {
                Conn::Tcp(s) => handle(s, &opts, &*exec, stop, None).await,
                Conn::Unix(s) => {
                    use std::os::fd::AsRawFd;
                    let fd = opts.expose_listeners.then(|| s.as_raw_fd());
                    handle(s, &opts, &*exec, stop, fd).await
                }
            };
        });
    };
    if let Inner::Unix(_, path, identity) = &listener.inner {
        if identity.is_some() && file_identity(path) == *identity {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

fn is_transient(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: out of resources for now, retry shortly.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
        || matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        )
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(inner: &Inner) -> io::Result<Conn> {
    match inner {
        Inner::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
        Inner::Unix(l, ..) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
    }
}

/// What one connection is doing.
struct Session {
    level: Level,
    interactive: bool,
    timeout: Duration,
}

enum Flow {
    Continue,
    Close,
}

async fn handle<S, E>(
    mut stream: S,
    options: &ServeOptions,
    exec: &E,
    mut stop: watch::Receiver<bool>,
    hand_over_fd: Option<std::os::fd::RawFd>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    E: Executor,
{
    let mut session = Session {
        level: options.level,
        interactive: false,
        timeout: options.timeout,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    let mut answered = false;
    loop {
        match next_command(&buf) {
            Frame::Command { text, consumed } => {
                let text = String::from_utf8_lossy(text).into_owned();
                buf.drain(..consumed);
                answered = true;
                if text.trim_end_matches('\r') == GETSOCKS && session.level == Level::Admin {
                    if let Some(fd) = hand_over_fd {
                        stream.flush().await?;
                        if exec.hand_over_listeners(fd)? {
                            break;
                        }
                    }
                }
                if let Flow::Close = run_command(&text, &mut session, exec, &mut stream).await? {
                    break;
                }
                continue;
            }
            // HAProxy's buffer is full without a complete command: it closes without a word.
            Frame::TooLong => break,
            Frame::Incomplete => {}
        }
        // Like HAProxy, a non-interactive session ends once it answered and nothing else is
        // buffered; a partial command keeps it waiting for the rest (a script may write its
        // commands in several pieces).
        if answered && !session.interactive && buf.is_empty() {
            break;
        }
        let room = (MAX_COMMAND - buf.len()).min(chunk.len());
        let n = tokio::select! {
            r = tokio::time::timeout(session.timeout, stream.read(&mut chunk[..room])) => match r {
                Ok(r) => r?,
                Err(_) => break, // idle timeout
            },
            r = stop.changed() => { if r.is_err() || *stop.borrow() { break } continue }
        };
        if n == 0 {
            // The client's shutdown: what is left is a command without its LF or `;`, which
            // HAProxy drops rather than run a possibly truncated command.
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = stream.shutdown().await;
    Ok(())
}

/// The longest command HAProxy 2.6 accepts, its delimiter included: the request chunk
/// (16384 bytes) minus the byte it keeps for the terminating NUL. A 16383-byte command is
/// answered, a 16384-byte one closes the connection.
pub const MAX_COMMAND: usize = MAX_LINE - 1;

/// What [`next_command`] found at the start of the request buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete command: its text (without its delimiter and without one `\r` before it)
    /// and how many bytes it took from the buffer (delimiter included).
    Command { text: &'a [u8], consumed: usize },
    /// No delimiter yet and still room for one: wait for more bytes.
    Incomplete,
    /// [`MAX_COMMAND`] bytes without a delimiter: HAProxy closes the connection silently.
    TooLong,
}

/// Frames the first command of `buf` the way HAProxy 2.6's CLI reads its request
/// (`co_getdelim(req, "\n;", '\\')`): up to the first LF or `;` not escaped by a backslash
/// (a backslash escapes any byte, LF included; the escape stays in the text for
/// [`command::tokenize`]), then one `\r` before the delimiter is dropped. Commands are
/// limited one by one, not per line: a `;` chain may be longer than 16 KiB.
pub fn next_command(buf: &[u8]) -> Frame<'_> {
    let window = &buf[..buf.len().min(MAX_COMMAND)];
    let mut escaped = false;
    for (i, &b) in window.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'\n' | b';' => {
                let text = &buf[..i];
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                return Frame::Command {
                    text,
                    consumed: i + 1,
                };
            }
            _ => {}
        }
    }
    if buf.len() >= MAX_COMMAND {
        Frame::TooLong
    } else {
        Frame::Incomplete
    }
}

/// Runs one command, writing its answer followed by HAProxy's post-command `"\n"` or
/// `"\n> "`. A client that does not take the answer within the session's timeout is dropped,
/// as HAProxy does (the timeout applies to both directions), so it cannot hold a connection
/// slot forever.
async fn run_command<S, E>(
    command: &str,
    session: &mut Session,
    exec: &E,
    stream: &mut S,
) -> io::Result<Flow>
where
    S: AsyncWrite + Unpin,
    E: Executor,
{
    let mut out = match command::parse(command) {
        Err(e) if e.level > session.level => PERMISSION_DENIED.to_string(),
        Err(e) => e.message,
        Ok(cmd) if cmd.level() > session.level => PERMISSION_DENIED.to_string(),
        Ok(Command::Quit) => return Ok(Flow::Close),
        Ok(Command::Prompt) => {
            session.interactive = !session.interactive;
            String::new()
        }
        Ok(Command::Help(words)) => {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            command::help_message(&words)
        }
        Ok(Command::LowerLevel(level)) => {
            session.level = level;
            String::new()
        }
        Ok(Command::SetTimeoutCli(secs)) => {
            session.timeout = Duration::from_secs(u64::from(secs));
            String::new()
        }
        Ok(cmd) => exec.execute(cmd, session.level).await,
    };
    out.push_str(if session.interactive { "\n> " } else { "\n" });
    let write = async {
        stream.write_all(out.as_bytes()).await?;
        stream.flush().await
    };
    match tokio::time::timeout(session.timeout, write).await {
        Ok(written) => written.map(|()| Flow::Continue),
        Err(_) => Ok(Flow::Close),
    }
}
