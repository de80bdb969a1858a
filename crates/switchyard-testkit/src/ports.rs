//! Loopback ports for tests.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener, TcpStream};
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
}
