//! Non-blocking senders for a set of `log` targets.

use std::cell::RefCell;
use std::io::{self, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use switchyard_config::{Level, LogAddress, LogTarget};

use crate::syslog::{Framing, Header, Transport, DEFAULT_MAX_LEN};
use crate::time::TimeZone;

/// Sends log messages to every configured target, HAProxy style.
///
/// * A message is sent to a target only if its level is at least as severe as the target's
///   max level (`level <= max_level`).
/// * A target's min level does not filter: like HAProxy, messages more severe than it are
///   sent with their level capped to it (e.g. `emerg` becomes `notice` with min `notice`).
/// * Sends never block and never panic: UDP and unix datagram sockets are non-blocking and a
///   message that cannot be sent right away (EAGAIN, no syslog daemon, ...) is dropped and
///   counted in [`Logger::dropped`]. stdout/stderr get one `write` per line, errors ignored.
///
/// `Logger` is `Send + Sync`; `log` takes `&self` and uses a per-thread scratch buffer.
#[derive(Debug)]
pub struct Logger {
    sinks: Vec<Sink>,
    tag: Box<str>,
    hostname: Option<Box<str>>,
    pid: u32,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Sink {
    framing: Framing,
    max_level: Level,
    min_level: Option<Level>,
    output: Output,
}

#[derive(Debug)]
enum Output {
    Udp {
        socket: Arc<UdpSocket>,
        addr: SocketAddr,
    },
    /// Unconnected datagram socket: every send names the path, so a restarted syslog daemon
    /// (new socket inode at the same path) is picked up without any reconnection logic, and
    /// a path that does not exist yet simply drops messages until it appears.
    Unix {
        socket: UnixDatagram,
        path: PathBuf,
    },
    Stdout,
    Stderr,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(DEFAULT_MAX_LEN + 1));
}

impl Logger {
    /// Opens the sockets for `targets`. `tag` is the program name in syslog headers and
    /// `hostname` the `log-send-hostname` value (`None`: not sent).
    ///
    /// Fails only if a local socket cannot be created; unreachable destinations are not an
    /// error (messages to them are dropped).
    pub fn new(targets: &[LogTarget], tag: &str, hostname: Option<&str>) -> io::Result<Logger> {
        let mut v4: Option<Arc<UdpSocket>> = None;
        let mut v6: Option<Arc<UdpSocket>> = None;
        let mut sinks = Vec::with_capacity(targets.len());
        for target in targets {
            let (output, transport) = match &target.address {
                LogAddress::Udp(addr) => {
                    let slot = if addr.is_ipv4() { &mut v4 } else { &mut v6 };
                    let socket = match slot {
                        Some(s) => Arc::clone(s),
                        None => {
                            let s = Arc::new(udp_socket(addr)?);
                            *slot = Some(Arc::clone(&s));
                            s
                        }
                    };
                    (
                        Output::Udp {
                            socket,
                            addr: *addr,
                        },
                        Transport::Datagram,
                    )
                }
                LogAddress::Unix(path) => {
                    let socket = UnixDatagram::unbound()?;
                    socket.set_nonblocking(true)?;
                    (
                        Output::Unix {
                            socket,
                            path: path.clone(),
                        },
                        Transport::Datagram,
                    )
                }
                LogAddress::Stdout => (Output::Stdout, Transport::Stream),
                LogAddress::Stderr => (Output::Stderr, Transport::Stream),
            };
            sinks.push(Sink {
                framing: Framing {
                    format: target.format,
                    facility: target.facility,
                    max_len: target.max_len.unwrap_or(DEFAULT_MAX_LEN),
                    transport,
                    tz: TimeZone::Local,
                },
                max_level: target.max_level,
                min_level: target.min_level,
                output,
            });
        }
        Ok(Logger {
            sinks,
            tag: tag.into(),
            hostname: hostname.map(Into::into),
            pid: std::process::id(),
            dropped: AtomicU64::new(0),
        })
    }

    /// A logger with no target; `log` is a no-op.
    pub fn disabled() -> Logger {
        Logger {
            sinks: Vec::new(),
            tag: "".into(),
            hostname: None,
            pid: std::process::id(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Renders header dates in `tz` instead of local time (deterministic output for tests).
    pub fn with_timezone(mut self, tz: TimeZone) -> Logger {
        for sink in &mut self.sinks {
            sink.framing.tz = tz;
        }
        self
    }

    /// Overrides the PID printed in headers (defaults to the current process id).
    pub fn with_pid(mut self, pid: u32) -> Logger {
        self.pid = pid;
        self
    }

    /// True when there is no target at all: callers can skip building messages.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// True when at least one target would accept a message of `level`.
    pub fn enabled(&self, level: Level) -> bool {
        self.sinks.iter().any(|s| level <= s.max_level)
    }

    /// Number of messages that could not be sent (would block, or send error).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends `message` (without syslog header; a trailing newline is optional) to every
    /// target accepting `level`, stamped with the current time.
    pub fn log(&self, level: Level, message: &str) {
        if self.sinks.is_empty() {
            return;
        }
        self.log_at(level, SystemTime::now(), message);
    }

    /// Like [`Logger::log`] with an explicit header timestamp.
    pub fn log_at(&self, level: Level, time: SystemTime, message: &str) {
        if self.sinks.is_empty() {
            return;
        }
        let emit = |buf: &mut Vec<u8>| self.emit(buf, level, time, message);
        let done = SCRATCH
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut buf) => {
                    emit(&mut buf);
                    // Don't let one huge message pin memory on this thread forever.
                    if buf.capacity() > 64 * 1024 {
                        *buf = Vec::with_capacity(DEFAULT_MAX_LEN + 1);
                    }
                    true
                }
                Err(_) => false,
            })
            .unwrap_or(false);
        if !done {
            emit(&mut Vec::new());
        }
    }

    fn emit(&self, buf: &mut Vec<u8>, level: Level, time: SystemTime, message: &str) {
        let header = Header {
            tag: &self.tag,
            hostname: self.hostname.as_deref(),
            pid: self.pid,
        };
        for sink in &self.sinks {
            if level > sink.max_level {
                continue;
            }
            let level = match sink.min_level {
                Some(min) if level < min => min,
                _ => level,
            };
            sink.framing.encode(buf, level, &header, time, message);
            if sink.output.send(buf).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Output {
    fn send(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Udp { socket, addr } => socket.send_to(buf, addr).map(drop),
            Output::Unix { socket, path } => socket.send_to(buf, path).map(drop),
            Output::Stdout => io::stdout().lock().write_all(buf),
            Output::Stderr => io::stderr().lock().write_all(buf),
        }
    }
}

fn udp_socket(dest: &SocketAddr) -> io::Result<UdpSocket> {
    let socket = if dest.is_ipv4() {
        UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?
    } else {
        UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, 0))?
    };
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn logger_is_send_sync() {
        assert_send_sync::<Logger>();
    }

    #[test]
    fn disabled_is_empty() {
        let l = Logger::disabled();
        assert!(l.is_empty());
        assert!(!l.enabled(Level::Emerg));
        l.log(Level::Emerg, "nothing happens");
        assert_eq!(l.dropped(), 0);
        assert!(Logger::new(&[], "haproxy", None).unwrap().is_empty());
    }
}
