//! `nbthread` > 1: sessions run on threads of their own (switchyard_engine::workers). Held
//! connections are spread evenly over the threads, carry data on each, and a process replaced with
//! `-sf` still drains the sessions its other threads hold while the new one takes the
//! frontend and the TCP stats socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use switchyard_testkit::{
    cli, echo_server, free_port, http_get, http_port_server, wait_for_port, ChildGuard, TempDir,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn config(stats: u16, front: u16, echo: u16) -> String {
    format!(
        "global\n    nbthread 2\n    stats socket ipv4@127.0.0.1:{stats} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         listen db\n    bind 127.0.0.1:{front}\n    server s1 127.0.0.1:{echo}\n"
    )
}

/// Starts Switchyard on `cfg` and waits for its frontend and stats socket.
fn start(cfg: &std::path::Path, front: u16, stats: u16) -> (ChildGuard, SocketAddr) {
    let proxy = ChildGuard::spawn(Command::new(BIN).arg("-f").arg(cfg)).unwrap();
    let front_addr: SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    wait_for_port(front_addr, Duration::from_secs(10)).unwrap();
    wait_for_port(
        format!("127.0.0.1:{stats}").parse().unwrap(),
        Duration::from_secs(10),
    )
    .unwrap();
    (proxy, front_addr)
}

/// Each thread of `pid` by name, with its `/proc` stat fields after the parenthesised name
/// (the first is the state, field 3; utime and stime, fields 14 and 15, are the 12th and 13th).
fn thread_stats(pid: u32) -> Vec<(String, Vec<String>)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields = rest.split(' ').map(str::to_string).collect();
        threads.push((name.trim().to_string(), fields));
    }
    threads
}

/// CPU time (clock ticks, user + system) of each thread of `pid`, by thread name.
fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    thread_stats(pid)
        .into_iter()
        .map(|(name, fields)| {
            let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
            (name, ticks)
        })
        .collect()
}

/// CPU ticks each thread used from `before` to `after` (two `thread_ticks`), by name.
fn ticks_between(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(name, ticks)| {
            let was = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, t)| *t);
            (name.clone(), ticks - was)
        })
        .collect()
}

/// A connection through the proxy at `front` that has echoed `message` once.
fn connect_echoing(front: SocketAddr, message: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(front).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    echoes(&mut stream, message);
    stream
}

fn echoes(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, message);
}

/// Sends `bytes` through `stream` while reading the echo back on another thread.
fn pump(stream: &TcpStream, bytes: usize) {
    let mut reader = stream.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = reader.read(&mut buf).unwrap();
            assert!(n > 0, "the proxy closed with {left} bytes still to echo");
            left -= n.min(left);
        }
    });
    let chunk = vec![0x5a; 64 * 1024];
    let mut writer = stream.try_clone().unwrap();
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        writer.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    reading.join().unwrap();
}

#[test]
fn nbthread_2_alternates_held_sessions_over_two_threads_and_drains_both_on_sf() {
    let dir = TempDir::new("switchyard-threads").unwrap();
    let (stats, front, echo) = (free_port(), free_port(), echo_server());
    let cfg = dir.path().join("sy.cfg");
    std::fs::write(&cfg, config(stats, front, echo)).unwrap();
    let (mut old, front_addr) = start(&cfg, front, stats);
    let pid = old.pid();

    let info = cli(stats, "show info");
    assert!(info.contains("\nNbthread: 2\n"), "show info:\n{info}");
    let names: Vec<String> = thread_ticks(pid).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n == "switchyard-1"),
        "no second session thread among {names:?}"
    );

    // Opened one after another and held: the least loaded thread takes each, so they
    // alternate (a probe connection of the start-up wait may still count on one thread for
    // the first of them, which shifts the order but not the spread).
    let mut held: Vec<TcpStream> = (0..4)
        .map(|i| connect_echoing(front_addr, format!("hello {i}").as_bytes()))
        .collect();

    // Bulk data through each session in turn: the thread whose CPU time grows carries it.
    let mut carriers = Vec::new();
    for stream in &held {
        let before = thread_ticks(pid);
        pump(stream, 64 << 20);
        let after = thread_ticks(pid);
        let busiest = ticks_between(&before, &after)
            .into_iter()
            .map(|(name, ticks)| (ticks, name))
            .max()
            .unwrap();
        assert!(
            busiest.0 > 0,
            "no thread used CPU to move 64 MiB each way: {after:?}"
        );
        carriers.push(busiest.1);
    }
    let on_second = carriers.iter().filter(|n| *n == "switchyard-1").count();
    assert_eq!(
        on_second, 2,
        "four held sessions should be split two and two over the threads: {carriers:?}"
    );

    // A new process takes the port; the old one keeps its four sessions, on both threads,
    // until their clients close them, then exits.
    let mut new = ChildGuard::spawn(
        Command::new(BIN)
            .arg("-f")
            .arg(&cfg)
            .arg("-sf")
            .arg(pid.to_string()),
    )
    .unwrap();
    old.wait_for_output("waiting for 4 session(s)", Duration::from_secs(10))
        .unwrap();
    assert!(old.is_running(), "the old process left with sessions open");
    for (i, stream) in held.iter_mut().enumerate() {
        echoes(stream, format!("still here {i}").as_bytes());
    }
    let _fresh = connect_echoing(front_addr, b"to the new process");

    held.clear();
    assert!(
        old.wait_timeout(Duration::from_secs(10)).is_some(),
        "the old process did not exit once its last sessions closed"
    );
    assert!(new.is_running());
    // The stats socket (TCP, SO_REUSEPORT) went over to the new process as well.
    let info = cli(stats, "show info");
    assert!(
        info.contains(&format!("\nPid: {}\n", new.pid())),
        "show info:\n{info}"
    );
}

#[test]
fn an_idle_server_connection_moves_to_the_thread_of_the_client_that_takes_it() {
    let (front, server) = (free_port(), http_port_server());
    let dir = TempDir::new("switchyard-threads-http").unwrap();
    let cfg = dir.path().join("sy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    nbthread 2\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
             listen web\n    bind 127.0.0.1:{front}\n    http-reuse aggressive\n    server s1 127.0.0.1:{server}\n"
        ),
    )
    .unwrap();
    let _proxy = ChildGuard::spawn(Command::new(BIN).arg("-f").arg(&cfg)).unwrap();
    let front_addr = format!("127.0.0.1:{front}").parse().unwrap();
    wait_for_port(front_addr, Duration::from_secs(10)).unwrap();
    // Let a probe connection of the wait end, so that the two clients land on two threads.
    std::thread::sleep(Duration::from_millis(300));
    let connect = || {
        let stream = TcpStream::connect(front_addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };
    let (mut a, mut b) = (connect(), connect());
    // Two requests make the server connection "proven" (fit for a client's first request
    // with `http-reuse aggressive`); then it serves the other client, on the other thread,
    // and comes back: one server connection throughout, moved between the threads' reactors.
    // A pause before each request: the proxy pools a server connection before writing a
    // response that came whole, but only after relaying one that did not, and the test
    // should not depend on which.
    let pooled = || std::thread::sleep(Duration::from_millis(200));
    let on = |client: &mut TcpStream| {
        pooled();
        http_get(client)
    };
    let first = http_get(&mut a);
    let carried = [on(&mut a), on(&mut b), on(&mut a), on(&mut b), on(&mut b)];
    for (i, port) in carried.iter().enumerate() {
        assert_eq!(
            port,
            &first,
            "request {} went over another server connection: {first} then {carried:?}",
            i + 2
        );
    }
}

/// The share of one second each thread of `pid` was runnable (state `R`: running, or ready
/// and waiting for a CPU), by name, from samples every 2 ms. A thread that never sleeps is
/// runnable whatever else loads the machine, where its CPU time is not: a busy-polling
/// thread yields its CPU at every turn, and behind a compiler on both CPUs it gets little.
fn runnable_shares(pid: u32) -> Vec<(String, f64)> {
    let mut runnable: Vec<(String, u32)> = Vec::new();
    let samples = 500;
    for _ in 0..samples {
        for (name, fields) in thread_stats(pid) {
            let running = u32::from(fields[0] == "R");
            match runnable.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += running,
                None => runnable.push((name, running)),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    runnable
        .into_iter()
        .map(|(name, count)| (name, f64::from(count) / f64::from(samples)))
        .collect()
}

/// Both session threads of `pid` (the main one and `switchyard-1`), each runnable for a
/// share of a second within `range`.
fn assert_session_threads_runnable(pid: u32, range: std::ops::RangeInclusive<f64>, when: &str) {
    let shares = runnable_shares(pid);
    for name in ["switchyard", "switchyard-1"] {
        let share = shares
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no thread {name} among {shares:?}"))
            .1;
        assert!(range.contains(&share), "{name} {when}: {shares:?}");
    }
}

/// Both session threads sleep (two timer-floor wake-ups a second each).
fn assert_session_threads_sleep(pid: u32, when: &str) {
    assert_session_threads_runnable(pid, 0.0..=0.2, &format!("spins {when}"));
}

/// `Idle_pct` from `show info`.
fn idle_pct(stats: u16) -> u32 {
    let info = cli(stats, "show info");
    info.lines()
        .find_map(|line| line.strip_prefix("Idle_pct: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Idle_pct in:\n{info}"))
}

/// Rewrites `cfg` to `text`, reloads through the stats socket and checks that `show info`
/// then contains `expected`.
fn reload_to(cfg: &std::path::Path, text: &str, stats: u16, expected: &str) {
    std::fs::write(cfg, text).unwrap();
    let answer = cli(stats, "reload");
    assert!(answer.starts_with("Success=1"), "reload: {answer}");
    let info = cli(stats, "show info");
    assert!(info.contains(expected), "show info:\n{info}");
}

/// `busy-polling`: both session threads (the main one and `switchyard-1`) never sleep while
/// no traffic flows (and `Idle_pct` counts that as waiting), traffic still does, `show info` says so; a reload to a configuration
/// without it lets them sleep again, one with it turns it back on, and a soft stop drops it
/// while sessions drain.
#[test]
fn busy_polling_keeps_every_session_thread_polling_until_a_reload_drops_it() {
    let dir = TempDir::new("switchyard-busy").unwrap();
    let (stats, front, echo) = (free_port(), free_port(), echo_server());
    let cfg = dir.path().join("sy.cfg");
    let calm = config(stats, front, echo);
    let busy = calm.replacen("global\n", "global\n    busy-polling\n", 1);
    std::fs::write(&cfg, &busy).unwrap();
    let (mut proxy, front_addr) = start(&cfg, front, stats);
    let pid = proxy.pid();
    let info = cli(stats, "show info");
    assert!(info.contains("\nBusyPolling: 1\n"), "show info:\n{info}");
    let mut held = connect_echoing(front_addr, b"while spinning");

    // A spinning thread never sleeps.
    assert_session_threads_runnable(pid, 0.8..=1.0, "does not spin");
    // As in HAProxy, spinning in wait of events is idle time.
    let idle = idle_pct(stats);
    assert!(idle >= 50, "Idle_pct {idle} while only spinning");

    reload_to(&cfg, &calm, stats, "\nBusyPolling: 0\n");
    echoes(&mut held, b"calm again");
    assert_session_threads_sleep(pid, "after the reload");
    let idle = idle_pct(stats);
    assert!(idle >= 90, "Idle_pct {idle} with nothing to do");

    // On again by a reload; then a soft stop (SIGUSR1) drops it while a session drains.
    reload_to(&cfg, &busy, stats, "\nBusyPolling: 1\n");
    let mut draining = connect_echoing(front_addr, b"spinning again");
    let status = Command::new("kill")
        .args(["-USR1", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    proxy
        .wait_for_output("waiting for 1 session(s)", Duration::from_secs(10))
        .unwrap();
    echoes(&mut draining, b"draining");
    assert_session_threads_sleep(pid, "while the process drains");
}
