//! The stats socket server: HAProxy 2.6's CLI framing over TCP or a unix socket, generic over
//! an [`Executor`] that answers the commands touching the running configuration.
//!
//! Per connection, as HAProxy does:
//! - non-interactive by default: the request line (and any further complete lines already
//!   received) is executed, each `;`-separated command in order, the answers are written one
//!   after the other, then the connection is closed;
//! - `prompt` toggles interactive mode: after each answer the server writes `"\n> "` instead of
//!   `"\n"` and waits for the next line; `quit` closes;
//! - `help`, `prompt`, `quit`, `operator`, `user` and `set timeout cli` are answered here; the
//!   rest goes to the executor with the session's level, after the level check ("Permission
//!   denied");
//! - an idle connection is closed after the timeout (default 10 s like `stats timeout`,
//!   changed per connection by `set timeout cli`);
//! - a request line that does not fit in 16 KiB closes the connection without an answer.

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
}

/// Where the stats socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// A unix socket file, created with `mode` (e.g. `0o600`) when given; a stale file (no one
    /// accepting on it) is replaced, a live one is an `AddrInUse` error.
    Unix {
        path: PathBuf,
        mode: Option<u32>,
    },
    Tcp(SocketAddr),
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
}

impl ServeOptions {
    pub fn new(level: Level) -> Self {
        ServeOptions {
            level,
            timeout: DEFAULT_TIMEOUT,
            max_connections: 1024,
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
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub async fn bind(bind: &Bind) -> io::Result<Listener> {
        match bind {
            Bind::Tcp(addr) => Ok(Listener {
                inner: Inner::Tcp(TcpListener::bind(addr).await?),
            }),
            Bind::Unix { path, mode } => {
                let l = bind_unix(path, *mode).await?;
                Ok(Listener {
                    inner: Inner::Unix(l, path.clone()),
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

async fn bind_unix(path: &Path, mode: Option<u32>) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
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
                Conn::Tcp(s) => handle(s, &opts, &*exec, stop).await,
                Conn::Unix(s) => handle(s, &opts, &*exec, stop).await,
            };
        });
    };
    if let Inner::Unix(_, path) = &listener.inner {
        let _ = std::fs::remove_file(path);
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
        Inner::Unix(l, _) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
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
    let mut eof = false;
    loop {
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            answered = true;
            if let Flow::Close = run_line(&text, &mut session, exec, &mut stream).await? {
                break;
            }
            continue;
        }
        // No complete line left: a non-interactive session ends once it answered.
        if (answered && !session.interactive) || eof {
            if eof && !buf.is_empty() && (session.interactive || !answered) {
                // A last line without LF before the client's shutdown.
                let text = String::from_utf8_lossy(&std::mem::take(&mut buf)).into_owned();
                run_line(&text, &mut session, exec, &mut stream).await?;
            }
            break;
        }
        if buf.len() >= MAX_LINE {
            // HAProxy's buffer is full without a complete request: it closes without a word.
            break;
        }
        let room = (MAX_LINE - buf.len()).min(chunk.len());
        let n = tokio::select! {
            r = tokio::time::timeout(session.timeout, stream.read(&mut chunk[..room])) => match r {
                Ok(r) => r?,
                Err(_) => break, // idle timeout
            },
            r = stop.changed() => { if r.is_err() || *stop.borrow() { break } continue }
        };
        if n == 0 {
            eof = true;
        } else {
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let _ = stream.shutdown().await;
    Ok(())
}

/// Runs every command of one request line, writing each answer followed by HAProxy's
/// post-command `"\n"` or `"\n> "`.
async fn run_line<S, E>(
    line: &str,
    session: &mut Session,
    exec: &E,
    stream: &mut S,
) -> io::Result<Flow>
where
    S: AsyncWrite + Unpin,
    E: Executor,
{
    for part in command::split_commands(line) {
        let mut out = match command::parse(part) {
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
        stream.write_all(out.as_bytes()).await?;
    }
    stream.flush().await?;
    Ok(Flow::Continue)
}
