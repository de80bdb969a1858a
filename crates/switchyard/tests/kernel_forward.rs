//! `option kernel-forward`: the real binary forwards `mode tcp` sessions in the kernel (a BPF
//! sockhash) once they have settled into small request/response turns. Each test checks
//! which path the sessions took (the process's debug line for each move, and how often it
//! was woken against the messages forwarded) and that the session's log line still carries
//! the byte counts and the right ending. Needs root (BPF), as CI runs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use switchyard_testkit::{
    echo_server, free_port, poll_until, require_postgres_or_return, PgInstance, Switchyard,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// `stats`: the port of a Runtime API socket, if any.
fn config(front: u16, server: u16, timeouts: &str, stats: Option<u16>) -> String {
    let stats = stats
        .map(|port| format!("    stats socket ipv4@127.0.0.1:{port} level admin\n"))
        .unwrap_or_default();
    format!(
        "global\n    log stdout format raw local0 info\n{stats}\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 1s\n{timeouts}\
         listen kf\n    bind 127.0.0.1:{front}\n    option kernel-forward\n    server s1 127.0.0.1:{server}\n"
    )
}

/// Switchyard in front of the server at `server`, and its frontend's port.
fn start(server: u16, timeouts: &str) -> (Switchyard, u16) {
    let front = free_port();
    let proxy =
        Switchyard::start_logging(BIN, &config(front, server, timeouts, None), LOG_MOVES).unwrap();
    (proxy, front)
}

/// Switchyard in front of an echo server with a Runtime API socket (1 min timeouts): the
/// process, its frontend's port and its socket's.
fn start_with_stats() -> (Switchyard, u16, u16) {
    let (front, stats) = (free_port(), free_port());
    let config = config(
        front,
        echo_server(),
        "    timeout client 1m\n    timeout server 1m\n",
        Some(stats),
    );
    let proxy = Switchyard::start_logging(BIN, &config, LOG_MOVES).unwrap();
    (proxy, front, stats)
}

/// Switchyard in front of an echo server, with 10 s timeouts, and its frontend's port.
fn start_echo() -> (Switchyard, u16) {
    start(
        echo_server(),
        "    timeout client 10s\n    timeout server 10s\n",
    )
}

/// Sends `payload` through the echo server from one thread while reading it back, then
/// half-closes (the echo server still answers, then closes); what came back.
fn echo_both_ways(client: &mut TcpStream, payload: Vec<u8>) -> Vec<u8> {
    let mut writer = client.try_clone().unwrap();
    let size = payload.len();
    let sender = std::thread::spawn(move || {
        writer.write_all(&payload).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::with_capacity(size);
    client.read_to_end(&mut echoed).unwrap();
    sender.join().unwrap();
    echoed
}

/// A client of the frontend at `front` whose session has moved to the kernel, the first.
fn settled(proxy: &Switchyard, front: u16) -> TcpStream {
    let mut client = connect(front);
    settle(&mut client);
    assert_eq!(moved(proxy, 1), 1, "{}", proxy.stderr_so_far());
    client
}

/// Sessions moved to the kernel so far (their debug lines on stderr), once `expected` are
/// or 2 s passed (the lines reach the test through a pipe).
fn moved(proxy: &Switchyard, expected: usize) -> usize {
    let count = || {
        proxy
            .stderr_so_far()
            .matches("forwarded in the kernel from now on")
            .count()
    };
    poll_until(Duration::from_secs(2), count, |moved| *moved >= expected)
}

/// A client of the frontend at `front`, whose reads give up after 10 s.
fn connect(front: u16) -> TcpStream {
    let client = TcpStream::connect(("127.0.0.1", front)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
}

/// Diagnostics with a line for each session moved to the kernel.
const LOG_MOVES: &str = "warn,switchyard_engine::session=debug";

/// Round trips of small messages after which a session is in the kernel (16 turns).
const SETTLING_ROUND_TRIPS: usize = 10;

/// Makes a session settle: small request/response round trips through an echo server.
fn settle(client: &mut TcpStream) {
    let mut answer = [0u8; 100];
    for turn in 0..SETTLING_ROUND_TRIPS {
        let message = [turn as u8; 100];
        client.write_all(&message).unwrap();
        client.read_exact(&mut answer).unwrap();
        assert_eq!(answer, message);
    }
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
    poll_until(
        Duration::from_secs(5),
        || log_lines(proxy),
        |lines| lines.len() >= count,
    )
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
fn a_settled_session_stays_in_the_kernel_for_bulk_both_ways_with_half_close() {
    let (proxy, front) = start_echo();
    const SIZE: usize = 8 << 20;
    let payload: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let mut client = settled(&proxy, front);
    let before = wake_ups(&proxy);
    let echoed = echo_both_ways(&mut client, payload.clone());
    assert!(echoed == payload, "{} bytes back of {SIZE}", echoed.len());
    let woken = wake_ups(&proxy) - before;
    let lines = wait_for_lines(&proxy, 1);
    // For the record only: a busy thread is not woken, so the count does not tell the
    // paths apart for a bulk flow (the debug line above does).
    eprintln!("8 MiB each way woke the process {woken} times; {lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (bytes, state) = bytes_and_state(&lines[0]);
    // The settling turns in user space and the bulk in the kernel, in one count.
    assert_eq!(
        bytes,
        (SIZE + 100 * SETTLING_ROUND_TRIPS) as u64,
        "{}",
        lines[0]
    );
    assert_eq!(state, "--", "{}", lines[0]);
}

/// A bulk flow moves faster spliced in user space than in the kernel's sockhash: a session
/// that starts with one never moves.
#[test]
fn a_bulk_session_stays_in_user_space() {
    let (proxy, front) = start_echo();
    let mut client = connect(front);
    let before = wake_ups(&proxy);
    const SIZE: usize = 8 << 20;
    assert_eq!(echo_both_ways(&mut client, vec![7u8; SIZE]).len(), SIZE);
    let woken = wake_ups(&proxy) - before;
    let lines = wait_for_lines(&proxy, 1);
    eprintln!("8 MiB each way in user space woke the process {woken} times; {lines:?}");
    assert_eq!(moved(&proxy, 0), 0, "{}", proxy.stderr_so_far());
    assert_eq!(bytes_and_state(&lines[0]), (SIZE as u64, "--".to_string()));
}

/// A session that ends before it settles (a connection per query) is relayed in user space
/// throughout: moving it would cost more than it gains.
#[test]
fn short_sessions_stay_in_user_space() {
    let (proxy, front) = start_echo();
    const SESSIONS: usize = 20;
    for _ in 0..SESSIONS {
        let mut client = connect(front);
        // Three round trips: six turns, fewer than it takes to settle.
        for turn in 0..3u8 {
            client.write_all(&[turn; 1000]).unwrap();
            let mut answer = [0u8; 1000];
            client.read_exact(&mut answer).unwrap();
        }
        client.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
    }
    let lines = wait_for_lines(&proxy, SESSIONS);
    assert_eq!(moved(&proxy, 0), 0, "{}", proxy.stderr_so_far());
    assert_eq!(lines.len(), SESSIONS, "{lines:?}");
    for line in &lines {
        assert_eq!(bytes_and_state(line), (3000, "--".to_string()), "{line}");
    }
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
    let (proxy, front) = start_echo();
    let mut client = settled(&proxy, front);
    client.set_nodelay(true).unwrap();
    let mut answer = [0u8; 200];
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

/// The kernel forwards without telling the process: the session reads its counts every
/// second while it carries data, so the stats follow a long session before it ends.
#[test]
fn the_stats_follow_a_session_in_the_kernel() {
    let (proxy, front, stats) = start_with_stats();
    let mut client = settled(&proxy, front);
    let mut answer = [0u8; 1000];
    for turn in 0..200 {
        let message = [(turn % 251) as u8; 1000];
        client.write_all(&message).unwrap();
        client.read_exact(&mut answer).unwrap();
    }
    let carried = (100 * SETTLING_ROUND_TRIPS + 200 * 1000) as u64;
    // Bytes in (client to server) and out of the backend, from `show stat`.
    let counted = || {
        let table = switchyard_testkit::cli(stats, "show stat");
        let row = switchyard_testkit::stat_row(&table, "kf", "BACKEND");
        let number = |name: &str| row[name].parse::<u64>().unwrap();
        (number("bin"), number("bout"))
    };
    let seen = poll_until(Duration::from_secs(4), counted, |seen| {
        *seen == (carried, carried)
    });
    assert_eq!(seen, (carried, carried), "the session is still open");
    assert!(log_lines(&proxy).is_empty(), "the session ended");
}

/// The Runtime API sees a session in the kernel as any other: listed by `show sess`, ended by
/// `shutdown session` (both sockets reset, `KD` in its log line).
#[test]
fn shutdown_session_ends_a_session_in_the_kernel() {
    let (proxy, front, stats) = start_with_stats();
    let mut client = settled(&proxy, front);
    let src = client.local_addr().unwrap();
    let list = switchyard_testkit::cli(stats, "show sess");
    let line = list
        .lines()
        .find(|l| l.contains(&format!(" src={src} ")))
        .unwrap_or_else(|| panic!("not listed: {list:?}"));
    assert!(line.contains(" fe=kf be=kf srv=s1 "), "{line}");
    let id = line.split_once(':').unwrap().0;
    assert_eq!(
        switchyard_testkit::cli(stats, &format!("shutdown session {id}")),
        "\n"
    );
    let mut rest = [0u8; 16];
    let ended = client.read(&mut rest);
    assert!(
        matches!(ended, Ok(0) | Err(_)),
        "the client still reads: {ended:?}"
    );
    let lines = wait_for_lines(&proxy, 1);
    let (bytes, state) = bytes_and_state(&lines[0]);
    assert_eq!(bytes, 100 * SETTLING_ROUND_TRIPS as u64, "{}", lines[0]);
    assert_eq!(state, "KD", "{}", lines[0]);
}

#[test]
fn an_idle_session_ends_on_the_client_timeout() {
    let (proxy, front) = start(
        echo_server(),
        "    timeout client 600ms\n    timeout server 10s\n",
    );
    let mut client = settled(&proxy, front);
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    // The proxy closes it (a reset on a timed-out session, as in the user-space relay).
    let _ = client.read_to_end(&mut rest);
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(550), "closed after {idle:?}");
    assert!(idle < Duration::from_secs(5), "closed after {idle:?}");
    let lines = wait_for_lines(&proxy, 1);
    let (bytes, state) = bytes_and_state(&lines[0]);
    assert_eq!(bytes, 100 * SETTLING_ROUND_TRIPS as u64, "{}", lines[0]);
    assert_eq!(state, "cD", "{}", lines[0]);
}

/// The total time (`Tt`) of a tcplog line, in ms.
fn lasted_ms(line: &str) -> u64 {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields.iter().position(|f| *f == "kf/s1").unwrap();
    fields[at + 1].rsplit('/').next().unwrap().parse().unwrap()
}

#[test]
fn pgbench_through_kernel_forwarding() {
    require_postgres_or_return!();
    let pg = PgInstance::start_named("kf").unwrap();
    pg.pgbench_init(1).unwrap();
    let (proxy, front) = start(pg.port(), "    timeout client 1m\n    timeout server 1m\n");
    let before = wake_ups(&proxy);
    let persistent = pg
        .pgbench(Some(front), &["-S", "-c", "4", "-j", "2", "-T", "3"])
        .unwrap();
    persistent.assert_clean();
    assert!(persistent.transactions > 100, "{}", persistent.raw);
    let woken = wake_ups(&proxy) - before;
    // pgbench's own first session (it looks the scale up), then its four clients'.
    let lines = wait_for_lines(&proxy, 5);
    let clients = lines.iter().filter(|l| lasted_ms(l) >= 1000).count();
    assert_eq!(clients, 4, "{lines:#?}");
    assert_eq!(moved(&proxy, 4), 4, "{}", proxy.stderr_so_far());
    eprintln!(
        "{} transactions woke the process {woken} times",
        persistent.transactions
    );
    // Its own timers, and the sessions' first turns before they settled; not a wake-up per
    // transaction (user space: two or more).
    assert!(
        woken * 10 < persistent.transactions,
        "woken {woken} times for {} transactions",
        persistent.transactions
    );
    // A connection per transaction never settles; it is relayed in user space, as cleanly.
    let per_tx = pg
        .pgbench(Some(front), &["-S", "-C", "-c", "4", "-j", "2", "-T", "2"])
        .unwrap();
    per_tx.assert_clean();
    let sessions = lines.len() + 1 + per_tx.transactions as usize;
    let lines = wait_for_lines(&proxy, sessions);
    assert!(lines.len() >= sessions, "{} lines", lines.len());
    assert!(
        lines.iter().all(|l| bytes_and_state(l).1 == "--"),
        "{lines:#?}"
    );
    assert_eq!(moved(&proxy, 4), 4, "{}", proxy.stderr_so_far());
}
