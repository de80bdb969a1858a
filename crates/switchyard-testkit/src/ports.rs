//! Loopback ports for tests.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::tmp::{base_dir, random_u64};

/// Ports are drawn from here: high, but below Linux's ephemeral range (32768-60999) so that
/// outgoing connections never occupy a port a test is about to bind, and above the usual
/// well-known database ports.
const LOW: u16 = 20000;
const HIGH: u16 = 32000;

struct Reserved {
    ports: HashSet<u16>,
    /// Held for the life of the process: an exclusive `flock` per port tells other test
    /// processes (nextest runs binaries and tests in parallel) that the port is taken.
    /// The kernel drops the locks when the process exits, however it exits.
    locks: Vec<File>,
}

static RESERVED: Mutex<Option<Reserved>> = Mutex::new(None);

fn lock_port(port: u16) -> Option<Option<File>> {
    let dir = base_dir().join("switchyard-testkit-ports");
    if !dir.exists() {
        let _ = std::fs::DirBuilder::new()
            .mode(0o1777)
            .recursive(true)
            .create(&dir);
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    let path = dir.join(port.to_string());
    // Read-only is enough for flock, and works on files another user created.
    let opened = File::open(&path).or_else(|_| {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o666)
            .open(&path)
    });
    let file = match opened {
        Ok(f) => f,
        // Cannot lock (read-only or foreign directory): fall back to the bind test alone.
        Err(_) => return Some(None),
    };
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Some(Some(file))
    } else {
        None // another process holds it
    }
}

/// A loopback TCP port that is free now and has not been handed out before, neither in this
/// process nor (through per-port lock files under the temp dir) in any other process using
/// this function at the same time. The port is chosen at random in 20000..32000 and
/// test-bound on 127.0.0.1; falls back to a kernel-assigned port if that range is exhausted.
pub fn free_port() -> u16 {
    let mut guard = RESERVED.lock().unwrap_or_else(|p| p.into_inner());
    let reserved = guard.get_or_insert_with(|| Reserved {
        ports: HashSet::new(),
        locks: Vec::new(),
    });
    for _ in 0..2000 {
        let port = LOW + (random_u64() % u64::from(HIGH - LOW)) as u16;
        if reserved.ports.contains(&port) {
            continue;
        }
        let Some(lock) = lock_port(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // lock released when `lock` drops
        }
        reserved.ports.insert(port);
        reserved.locks.extend(lock);
        return port;
    }
    // Unlikely: let the kernel choose (an ephemeral port).
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding 127.0.0.1:0");
        if reserved.ports.insert(port) {
            return port;
        }
    }
}

/// Whether a socket listens for TCP connections to `addr` in this network namespace, read
/// from `/proc/net/tcp` and `/proc/net/tcp6` without connecting: a probe connection would be a
/// session to the program under test (an HTTP frontend answers, counts and logs a connection
/// that sends nothing, as HAProxy does). A listener on the wildcard address of `addr`'s
/// family, or on IPv6 for an IPv4 `addr` (dual stack), counts. `None` when neither table can
/// be read.
pub fn is_listening(addr: SocketAddr) -> Option<bool> {
    const LISTEN: &str = "0A";
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        let found = text.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (Some(local), Some(state)) = (fields.next(), fields.nth(1)) else {
                return false;
            };
            state == LISTEN && proc_addr(local).is_some_and(|l| serves(l, addr))
        });
        if found {
            return Some(true);
        }
    }
    readable.then_some(false)
}

/// `HEXADDR:HEXPORT` of `/proc/net/tcp{,6}`: the address as 32-bit words in host order.
fn proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in ip.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip: IpAddr = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether a listener on `listener` takes connections to `addr`.
fn serves(listener: SocketAddr, addr: SocketAddr) -> bool {
    if listener.port() != addr.port() {
        return false;
    }
    let ip = match listener.ip() {
        IpAddr::V6(v6) if addr.is_ipv4() => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => return v6.is_unspecified(),
        },
        ip => ip,
    };
    (ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4()) || ip == addr.ip()
}

/// Waits until a TCP connection to `addr` succeeds (the connection is closed at once).
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left
            .min(Duration::from_millis(500))
            .max(Duration::from_millis(10));
        match TcpStream::connect_timeout(&addr, attempt) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                bail!("nothing accepted connections on {addr} within {timeout:?} (last error: {e})")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_unique_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "duplicates in {ports:?}");
        for port in &ports[..20] {
            TcpListener::bind(("127.0.0.1", *port)).expect("free port is bindable");
        }
    }

    #[test]
    fn free_ports_are_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<_>>()))
            .collect();
        let all: Vec<u16> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let unique: HashSet<u16> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len());
    }

    #[test]
    fn wait_for_port_sees_a_listener_and_times_out_without_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        wait_for_port(addr, Duration::from_secs(2)).unwrap();
        drop(listener);
        let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let start = Instant::now();
        assert!(wait_for_port(closed, Duration::from_millis(300)).is_err());
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn listeners_are_seen_without_connecting() {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = v4.local_addr().unwrap();
        assert_eq!(is_listening(addr), Some(true));
        drop(v4);
        assert_eq!(is_listening(addr), Some(false));
        // Dual stack: `[::]:PORT` takes IPv4 connections to 127.0.0.1.
        if let Ok(any6) = TcpListener::bind("[::]:0") {
            let port = any6.local_addr().unwrap().port();
            let loopback: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            assert_eq!(is_listening(loopback), Some(true));
        }
        // A connected socket is not a listener.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let client_addr = client.local_addr().unwrap();
        assert_eq!(is_listening(client_addr), Some(false));
    }

    #[test]
    fn proc_addresses_decode_in_host_order() {
        let v4 = proc_addr("0100007F:1F90").unwrap();
        assert_eq!(v4, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        let mapped = proc_addr("0000000000000000FFFF00000100007F:0050").unwrap();
        assert_eq!(
            mapped,
            "[::ffff:127.0.0.1]:80".parse::<SocketAddr>().unwrap()
        );
        assert!(proc_addr("zz:1").is_none());
    }
}
