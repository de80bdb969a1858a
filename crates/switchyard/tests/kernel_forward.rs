//! `option kernel-forward`: the real binary forwards `mode tcp` sessions in the kernel (a BPF
//! sockhash). Each test checks that the bytes did not pass through the process (its
//! `/proc/PID/io` read count stays far below what was forwarded) and that the session's
//! log line still carries the byte counts and the right ending. Needs root (BPF), as CI runs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use switchyard_testkit::{
    echo_server, free_port, require_postgres_or_return, PgInstance, Switchyard,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn config(front: u16, server: u16, timeouts: &str) -> String {
    format!(
        "global\n    log stdout format raw local0 info\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 1s\n{timeouts}\
         listen kf\n    bind 127.0.0.1:{front}\n    option kernel-forward\n    server s1 127.0.0.1:{server}\n"
    )
}

/// Switchyard in front of the server at `server`, and its frontend's port.
fn start(server: u16, timeouts: &str) -> (Switchyard, u16) {
    let front = free_port();
    let proxy = Switchyard::start(BIN, &config(front, server, timeouts)).unwrap();
    (proxy, front)
}

/// A client of the frontend at `front`, whose reads give up after 10 s.
fn connect(front: u16) -> TcpStream {
    let client = TcpStream::connect(("127.0.0.1", front)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
}

/// Bytes the process read through system calls so far (`rchar`).
fn bytes_read(proxy: &Switchyard) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", proxy.pid())).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// The tcplog lines of the `kf` proxy printed so far.
fn log_lines(proxy: &Switchyard) -> Vec<String> {
    proxy
        .stdout_so_far()
        .lines()
        .filter(|l| l.contains("] kf kf/s1 "))
        .map(str::to_string)
        .collect()
}

/// Waits for `count` log lines.
fn wait_for_lines(proxy: &Switchyard, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = log_lines(proxy);
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The bytes field of a tcplog line (server to client, as HAProxy counts) and its
/// termination state.
fn bytes_and_state(line: &str) -> (u64, String) {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // ... frontend backend/server Tw/Tc/Tt bytes state ...
    let at = fields.iter().position(|f| *f == "kf/s1").unwrap();
    (fields[at + 2].parse().unwrap(), fields[at + 3].to_string())
}

#[test]
fn bulk_both_ways_with_half_close_stays_in_the_kernel() {
    let (proxy, front) = start(
        echo_server(),
        "    timeout client 10s\n    timeout server 10s\n",
    );
    let before = bytes_read(&proxy);
    const SIZE: usize = 8 << 20;
    let payload: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let mut client = connect(front);
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        // The client is done sending; the echo server still answers, then closes.
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::with_capacity(SIZE);
    client.read_to_end(&mut echoed).unwrap();
    sender.join().unwrap();
    assert!(echoed == payload, "{} bytes back of {SIZE}", echoed.len());
    let read = bytes_read(&proxy) - before;
    let lines = wait_for_lines(&proxy, 1);
    eprintln!("8 MiB each way: the process read {read} bytes; {lines:?}");
    assert!(read < 64 * 1024, "the process read {read} bytes");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (bytes, state) = bytes_and_state(&lines[0]);
    assert_eq!(bytes, SIZE as u64, "{}", lines[0]);
    assert_eq!(state, "--", "{}", lines[0]);
}

/// Context switches of all the process's threads so far: how often it was woken.
fn wake_ups(proxy: &Switchyard) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", proxy.pid())).unwrap();
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The kernel tells a socket's reader of every message it redirects; the sockets are out
/// of the process's event loop, so that does not wake it.
#[test]
fn round_trips_do_not_wake_the_process() {
    let (proxy, front) = start(
        echo_server(),
        "    timeout client 10s\n    timeout server 10s\n",
    );
    let mut client = connect(front);
    client.set_nodelay(true).unwrap();
    let mut answer = [0u8; 200];
    // The first round trip sets the session up (connect, link).
    client.write_all(&[1; 200]).unwrap();
    client.read_exact(&mut answer).unwrap();
    let before = wake_ups(&proxy);
    const ROUND_TRIPS: u64 = 2_000;
    for turn in 0..ROUND_TRIPS {
        let message = [(turn % 251) as u8; 200];
        client.write_all(&message).unwrap();
        client.read_exact(&mut answer).unwrap();
        assert_eq!(answer, message);
    }
    let woken = wake_ups(&proxy) - before;
    eprintln!("{ROUND_TRIPS} round trips woke the process {woken} times");
    // Its own timers (a 500 ms floor, stats) still run: a few wake-ups a second.
    assert!(woken < ROUND_TRIPS / 20, "woken {woken} times");
}

#[test]
fn an_idle_session_ends_on_the_client_timeout() {
    let (proxy, front) = start(
        echo_server(),
        "    timeout client 600ms\n    timeout server 10s\n",
    );
    let mut client = connect(front);
    client.write_all(b"ping").unwrap();
    let mut answer = [0u8; 4];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"ping");
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    // The proxy closes it (a reset on a timed-out session, as in the user-space relay).
    let _ = client.read_to_end(&mut rest);
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(550), "closed after {idle:?}");
    assert!(idle < Duration::from_secs(5), "closed after {idle:?}");
    let lines = wait_for_lines(&proxy, 1);
    let (bytes, state) = bytes_and_state(&lines[0]);
    assert_eq!(bytes, 4, "{}", lines[0]);
    assert_eq!(state, "cD", "{}", lines[0]);
}

#[test]
fn pgbench_through_kernel_forwarding() {
    require_postgres_or_return!();
    let pg = PgInstance::start_named("kf").unwrap();
    pg.pgbench_init(1).unwrap();
    let (proxy, front) = start(pg.port(), "    timeout client 1m\n    timeout server 1m\n");
    let before = bytes_read(&proxy);
    let persistent = pg
        .pgbench(Some(front), &["-S", "-c", "4", "-j", "2", "-T", "3"])
        .unwrap();
    persistent.assert_clean();
    assert!(persistent.transactions > 100, "{}", persistent.raw);
    let per_tx = pg
        .pgbench(Some(front), &["-S", "-C", "-c", "4", "-j", "2", "-T", "2"])
        .unwrap();
    per_tx.assert_clean();
    let read = bytes_read(&proxy) - before;
    let sessions = 4 + per_tx.transactions as usize;
    let lines = wait_for_lines(&proxy, sessions);
    assert!(lines.len() >= sessions, "{} lines", lines.len());
    let forwarded: u64 = lines.iter().map(|l| bytes_and_state(l).0).sum();
    eprintln!(
        "{} + {} transactions; {} sessions carried {forwarded} bytes to the clients; the process read {read}",
        persistent.transactions,
        per_tx.transactions,
        lines.len()
    );
    assert!(
        lines.iter().all(|l| bytes_and_state(l).1 == "--"),
        "{lines:#?}"
    );
    // What the process reads is its own: the log pipe, /proc, the stats socket; not the
    // sessions' bytes.
    assert!(read * 20 < forwarded, "read {read} of {forwarded}");
}
