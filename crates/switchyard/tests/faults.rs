//! Backend faults under continuous short-connection load through the real binary: two
//! backend processes behind a `listen` with L7 health checks (`tcp-check send/expect`, so a
//! paused process whose kernel still completes handshakes is noticed), while client threads
//! open, use and close connections without pause. One backend is paused (SIGSTOP), killed
//! (SIGKILL), blackholed (its link dropped in a network namespace the test creates, packets
//! silently lost) or slowed; the balancer must keep serving through the other, and the
//! clients may lose at most the connections that were in flight on the faulty backend. The
//! pause is repeated with real PostgreSQL servers under back-to-back pgbench runs. A test
//! runs 10,000 connection cycles and compares the proxy's open descriptors and resident
//! memory before and after.
//!
//! Every test prints what it measured (failed connections, time to DOWN, time to reroute);
//! bounds are generous so a loaded machine does not fail them, the numbers tell the story.
//! Without root or iproute2 the namespace test prints SKIP, except with `CI` set, where it
//! fails.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_testkit::{
    echo_server, free_port, libc, require_command, tool_missing, ChildGuard, Switchyard,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const CLIENTS: usize = 8;

/// A line-echo backend: answers each line with `NAME line`. SIGUSR1 toggles a 150 ms delay
/// before every answer (a slowed server); prints `ready` once listening.
const BACKEND_PY: &str = r#"
import signal, socket, sys, threading, time
name, host, port = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
delay = [0.0]
def toggle(*_):
    delay[0] = 0.15 if delay[0] == 0 else 0.0
signal.signal(signal.SIGUSR1, toggle)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(1024)
print("ready", flush=True)
def serve(c):
    try:
        for line in c.makefile("rb"):
            if delay[0]:
                time.sleep(delay[0])
            c.sendall(name + b" " + line)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Starts a backend process (inside `netns` when given) and waits until it listens.
fn backend(name: &str, host: &str, port: u16, netns: Option<&str>) -> ChildGuard {
    let mut cmd = match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, "python3"]);
            cmd
        }
        None => Command::new("python3"),
    };
    cmd.args(["-c", BACKEND_PY, name, host, &port.to_string()]);
    let mut child = ChildGuard::spawn(&mut cmd).expect("spawning a backend");
    child
        .wait_for_output("ready", Duration::from_secs(10))
        .expect("backend ready");
    child
}

/// One client connection: when it ended, which backend answered (None: it failed) and how
/// long it took.
#[derive(Debug, Clone)]
struct Attempt {
    ended: Instant,
    served_by: Option<String>,
    error: Option<String>,
    took: Duration,
}

/// Client threads opening a connection, sending one line, reading the answer and closing,
/// in a loop. With `netns`, the threads run inside that network namespace.
struct Load {
    running: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(target: SocketAddr, clients: usize, netns: Option<&str>) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|n| {
                let (running, attempts) = (running.clone(), attempts.clone());
                let netns = netns.map(|ns| {
                    std::fs::File::open(format!("/var/run/netns/{ns}")).expect("opening netns")
                });
                std::thread::spawn(move || {
                    if let Some(netns) = netns {
                        // SAFETY: moves only this thread into the test's namespace.
                        let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                        assert_eq!(entered, 0, "setns failed");
                    }
                    let mut i = 0u64;
                    while running.load(Ordering::Relaxed) {
                        i += 1;
                        let line = format!("client {n} request {i}\n");
                        let started = Instant::now();
                        let result = one_exchange(target, &line);
                        let attempt = match result {
                            Ok(answer) => match answer.strip_suffix(&line) {
                                Some(name) => Attempt {
                                    ended: Instant::now(),
                                    served_by: Some(name.trim().to_string()),
                                    error: None,
                                    took: started.elapsed(),
                                },
                                None => Attempt {
                                    ended: Instant::now(),
                                    served_by: None,
                                    error: Some(format!("wrong answer {answer:?}")),
                                    took: started.elapsed(),
                                },
                            },
                            Err(e) => Attempt {
                                ended: Instant::now(),
                                served_by: None,
                                error: Some(e.to_string()),
                                took: started.elapsed(),
                            },
                        };
                        attempts.lock().unwrap().push(attempt);
                        // A short pause keeps 8 clients from starving a 2-core machine.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Load {
            running,
            attempts,
            threads,
        }
    }

    fn snapshot(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    /// Waits until `name` served a connection that ended after `since`.
    fn wait_served_by(&self, name: &str, since: Instant, limit: Duration) -> Duration {
        loop {
            let found = self
                .snapshot()
                .iter()
                .any(|a| a.ended > since && a.served_by.as_deref() == Some(name));
            if found {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < limit,
                "{name} served nothing within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(mut self) -> Vec<Attempt> {
        self.running.store(false, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.snapshot()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

fn one_exchange(target: SocketAddr, line: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
    // Longer than the proxy's own timeouts: the proxy, not the client, ends a stuck session.
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        ));
    }
    Ok(answer)
}

/// The proxy configuration: roundrobin over b1 and b2 with L7 checks every 200 ms, DOWN after
/// 2 failures, sessions on a DOWN server cut (`on-marked-down shutdown-sessions`), failed
/// connects retried and redispatched.
fn config(front: &str, b1: &str, b2: &str, balance: &str) -> String {
    format!(
        "global\n    log stdout format raw local0 info\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n\
         \x20   timeout server 10s\n    timeout check 500ms\n    retries 2\n    option redispatch\n\
         listen echo\n    bind {front}\n    log global\n    balance {balance}\n\
         \x20   option tcp-check\n    tcp-check send ping\\n\n    tcp-check expect string ping\n\
         \x20   default-server check inter 200ms fall 2 rise 2 on-marked-down shutdown-sessions\n\
         \x20   server b1 {b1}\n    server b2 {b2}\n"
    )
}

/// Polls the proxy's output (a file) for `needle`; returns when it was first seen.
fn wait_log(proxy: &mut ChildGuard, needle: &str, limit: Duration) -> Instant {
    let started = Instant::now();
    loop {
        if proxy.output_so_far().contains(needle) {
            return Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "no '{needle}' within {limit:?}; output tail:\n{}",
            tail(&proxy.output_so_far())
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// What the clients saw between `from` and `to`.
struct Window {
    ok: usize,
    failed: usize,
    by_b1: usize,
    /// The longest successful connection (retries and redispatches show here).
    slowest: Duration,
    last_failure: Option<Instant>,
    errors: Vec<String>,
}

fn window(attempts: &[Attempt], from: Instant, to: Instant) -> Window {
    let mut w = Window {
        ok: 0,
        failed: 0,
        by_b1: 0,
        slowest: Duration::ZERO,
        last_failure: None,
        errors: Vec::new(),
    };
    for a in attempts.iter().filter(|a| a.ended > from && a.ended <= to) {
        match &a.served_by {
            Some(name) => {
                w.ok += 1;
                w.slowest = w.slowest.max(a.took);
                if name == "b1" {
                    w.by_b1 += 1;
                }
            }
            None => {
                w.failed += 1;
                w.last_failure = Some(w.last_failure.map_or(a.ended, |l| l.max(a.ended)));
                if w.errors.len() < 5 {
                    w.errors.push(a.error.clone().unwrap_or_default());
                }
            }
        }
    }
    w
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Runs the load against both backends until both served, with no failure.
fn warm_up(load: &Load, started: Instant) {
    load.wait_served_by("b1", started, Duration::from_secs(10));
    load.wait_served_by("b2", started, Duration::from_secs(10));
    // Connections refused before the proxy listened do not count.
    let steady = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let w = window(&load.snapshot(), steady, Instant::now());
    assert_eq!(w.failed, 0, "failures before any fault: {:?}", w.errors);
}

/// Two loopback backends behind the proxy, with the client load running and warmed up.
struct Loaded {
    b1: ChildGuard,
    b1_port: u16,
    b2: ChildGuard,
    proxy: Switchyard,
    load: Load,
    started: Instant,
}

fn two_backends_under_load(balance: &str) -> Loaded {
    let (p1, p2, front) = (free_port(), free_port(), free_port());
    let b1 = backend("b1", "127.0.0.1", p1, None);
    let b2 = backend("b2", "127.0.0.1", p2, None);
    let cfg = config(
        &format!("127.0.0.1:{front}"),
        &format!("127.0.0.1:{p1}"),
        &format!("127.0.0.1:{p2}"),
        balance,
    );
    let proxy = Switchyard::start(BIN, &cfg).unwrap();
    let started = Instant::now();
    let load = Load::start(SocketAddr::from(([127, 0, 0, 1], front)), CLIENTS, None);
    warm_up(&load, started);
    Loaded {
        b1,
        b1_port: p1,
        b2,
        proxy,
        load,
        started,
    }
}

#[test]
fn a_paused_backend_is_taken_out_and_only_its_in_flight_connections_fail() {
    if !require_command("python3", "python3") {
        return;
    }
    let Loaded {
        b1,
        b1_port: _,
        b2: _b2,
        mut proxy,
        load,
        started: _,
    } = two_backends_under_load("roundrobin");

    // SIGSTOP: the kernel still completes handshakes into the listen backlog, so only the
    // L7 check tells the process is gone; sessions already on it hang until it is DOWN.
    let paused = Instant::now();
    assert!(b1.signal(libc::SIGSTOP));
    let down = wait_log(
        proxy.child(),
        "Server echo/b1 is DOWN",
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(2));
    let settled = Instant::now();
    let attempts = load.snapshot();
    let fault = window(&attempts, paused, settled);
    let after_down = window(&attempts, down + Duration::from_millis(500), settled);
    eprintln!(
        "SIGSTOP: b1 DOWN after {} ms; {} connections failed (last {} ms after the pause), {} \
         served meanwhile (slowest {} ms); after DOWN: {} ok, {} failed",
        ms(down - paused),
        fault.failed,
        fault.last_failure.map_or(0, |l| ms(l - paused)),
        fault.ok,
        ms(fault.slowest),
        after_down.ok,
        after_down.failed
    );
    // In flight: each client holds at most one connection; those sent to b1 between the
    // pause and DOWN wait for it and are cut at DOWN. Nothing after.
    assert!(
        fault.failed <= 2 * CLIENTS,
        "{} failures: {:?}",
        fault.failed,
        fault.errors
    );
    assert_eq!(after_down.failed, 0, "{:?}", after_down.errors);
    assert_eq!(after_down.by_b1, 0);
    assert!(after_down.ok > 0);

    // SIGCONT: b1 comes back UP and takes connections again.
    let resumed = Instant::now();
    assert!(b1.signal(libc::SIGCONT));
    let up = wait_log(
        proxy.child(),
        "Server echo/b1 is UP",
        Duration::from_secs(15),
    );
    let back = load.wait_served_by("b1", resumed, Duration::from_secs(15));
    let attempts = load.finish();
    let resumed_window = window(&attempts, resumed, Instant::now());
    eprintln!(
        "SIGCONT: b1 UP after {} ms, serving again after {} ms; {} failures since",
        ms(up - resumed),
        ms(back),
        resumed_window.failed
    );
    assert_eq!(resumed_window.failed, 0, "{:?}", resumed_window.errors);
    assert!(proxy.stop(Duration::from_secs(10)).is_some());
}

#[test]
fn a_killed_backend_costs_at_most_the_connections_in_flight() {
    if !require_command("python3", "python3") {
        return;
    }
    let Loaded {
        b1,
        b1_port,
        b2: _b2,
        mut proxy,
        load,
        started: _,
    } = two_backends_under_load("roundrobin");

    let killed = Instant::now();
    assert!(b1.signal(libc::SIGKILL));
    let down = wait_log(
        proxy.child(),
        "Server echo/b1 is DOWN",
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(1));
    let attempts = load.snapshot();
    let fault = window(&attempts, killed, Instant::now());
    // Connects refused by the dead port are retried and redispatched to b2 (slower, not
    // failed), so only the sessions already on b1 can fail.
    let slowest = attempts
        .iter()
        .filter(|a| a.ended > killed && a.served_by.is_some())
        .map(|a| a.took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "SIGKILL: b1 DOWN after {} ms; {} connections failed, {} served meanwhile (slowest {} \
         ms: retried then redispatched); errors {:?}",
        ms(down - killed),
        fault.failed,
        fault.ok,
        ms(slowest),
        fault.errors
    );
    assert!(fault.failed <= CLIENTS, "{:?}", fault.errors);

    // The process restarts on the same port: back UP, serving again.
    let restarted = Instant::now();
    let _b1 = backend("b1", "127.0.0.1", b1_port, None);
    let up = wait_log(
        proxy.child(),
        "Server echo/b1 is UP",
        Duration::from_secs(15),
    );
    load.wait_served_by("b1", restarted, Duration::from_secs(15));
    let attempts = load.finish();
    let after = window(&attempts, down + Duration::from_millis(500), Instant::now());
    eprintln!(
        "restart: b1 UP after {} ms; {} ok and {} failed since DOWN",
        ms(up - restarted),
        after.ok,
        after.failed
    );
    assert_eq!(after.failed, 0, "{:?}", after.errors);
    assert!(proxy.stop(Duration::from_secs(10)).is_some());
}

#[test]
fn a_slowed_backend_keeps_serving_and_leastconn_sends_it_less() {
    if !require_command("python3", "python3") {
        return;
    }
    let Loaded {
        b1,
        b1_port: _,
        b2: _b2,
        mut proxy,
        load,
        started,
    } = two_backends_under_load("leastconn");
    let before = window(&load.snapshot(), started, Instant::now());

    // 150 ms per answer on b1 (below `timeout check`: slow, not dead).
    assert!(b1.signal(libc::SIGUSR1));
    let slowed = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let attempts = load.finish();
    let during = window(&attempts, slowed, Instant::now());
    let latency = |name: &str| {
        let mut took: Vec<Duration> = attempts
            .iter()
            .filter(|a| a.ended > slowed && a.served_by.as_deref() == Some(name))
            .map(|a| a.took)
            .collect();
        took.sort();
        took.get(took.len() / 2).copied().unwrap_or_default()
    };
    let share = |w: &Window| 100 * w.by_b1 / w.ok.max(1);
    eprintln!(
        "slowed b1 (+150 ms per answer, leastconn): {} ok, {} failed in 3 s; b1's share {}% \
         (before: {}%); median time b1 {} ms, b2 {} ms",
        during.ok,
        during.failed,
        share(&during),
        share(&before),
        ms(latency("b1")),
        ms(latency("b2"))
    );
    assert_eq!(during.failed, 0, "{:?}", during.errors);
    assert!(
        share(&during) < 40,
        "leastconn should send the slow server less"
    );
    let output = proxy.output_so_far();
    assert!(
        !output.contains("Server echo/b1 is DOWN"),
        "{}",
        tail(&output)
    );
    assert!(proxy.stop(Duration::from_secs(10)).is_some());
}

/// Namespaces `<prefix>p` (the proxy, the clients and b2 on its loopback) and `<prefix>b`
/// (b1), joined by a veth pair on 10.251.N.0/30; removed with their processes on drop.
struct Lab {
    prefix: String,
    subnet: u8,
}

impl Lab {
    fn new() -> Option<Lab> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            tool_missing("network namespaces need root");
            return None;
        }
        if !require_command("ip", "iproute2") || !require_command("python3", "python3") {
            return None;
        }
        let id = std::process::id() % 10_000;
        let lab = Lab {
            prefix: format!("syf{id}"),
            subnet: (std::process::id() % 200) as u8,
        };
        if !Command::new("ip")
            .args(["netns", "add", &lab.ns("p")])
            .status()
            .is_ok_and(|s| s.success())
        {
            tool_missing("cannot create network namespaces");
            return None;
        }
        let (p, b) = (lab.ns("p"), lab.ns("b"));
        ip(&["netns", "add", &b]);
        let (left, right) = (format!("{}p0", lab.prefix), format!("{}b0", lab.prefix));
        ip(&["link", "add", &left, "type", "veth", "peer", "name", &right]);
        ip(&["link", "set", &left, "netns", &p]);
        ip(&["link", "set", &right, "netns", &b]);
        for (ns, dev, addr) in [(&p, &left, lab.addr(1)), (&b, &right, lab.addr(2))] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "name", "eth0"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        // A permanent neighbour entry: with b1's link down, packets are then dropped on the
        // wire instead of failing fast on an unanswered ARP (a true blackhole).
        let mac = lab.mac("b");
        ip(&[
            "-n",
            &p,
            "neigh",
            "replace",
            &lab.addr(2),
            "lladdr",
            &mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        Some(lab)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn addr(&self, last: u8) -> String {
        format!("10.251.{}.{last}", self.subnet)
    }

    fn mac(&self, host: &str) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns(host), "-o", "link", "show", "eth0"])
            .output()
            .expect("ip link");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let after = text.split("link/ether ").nth(1).unwrap_or_default();
        after
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// b1's side of the link down (packets to it vanish) or up again.
    fn blackhole(&self, on: bool) {
        let state = if on { "down" } else { "up" };
        ip(&["-n", &self.ns("b"), "link", "set", "eth0", state]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in ["p", "b"] {
            let ns = self.ns(host);
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: killing processes inside the namespaces this test made.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_blackholed_backend_is_taken_out_and_only_its_in_flight_connections_fail() {
    let Some(lab) = Lab::new() else {
        return;
    };
    let (p, b) = (lab.ns("p"), lab.ns("b"));
    let _b1 = backend("b1", "0.0.0.0", 7001, Some(&b));
    let _b2 = backend("b2", "127.0.0.1", 7002, Some(&p));
    let dir = switchyard_testkit::TempDir::new("switchyard-faults").unwrap();
    let path = dir.path().join("faults.cfg");
    let cfg = config(
        "127.0.0.1:7000",
        &format!("{}:7001", lab.addr(2)),
        "127.0.0.1:7002",
        "roundrobin",
    );
    std::fs::write(&path, cfg).unwrap();
    let mut proxy = ChildGuard::spawn(Command::new("ip").args([
        "netns",
        "exec",
        &p,
        BIN,
        "-f",
        path.to_str().unwrap(),
    ]))
    .unwrap();
    let started = Instant::now();
    let load = Load::start(SocketAddr::from(([127, 0, 0, 1], 7000)), CLIENTS, Some(&p));
    warm_up(&load, started);

    // Packets to b1 are dropped: connects time out (retried, redispatched), sessions on b1
    // hang until the checks time out and b1 is DOWN.
    let cut = Instant::now();
    lab.blackhole(true);
    let down = wait_log(
        &mut proxy,
        "Server echo/b1 is DOWN",
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(2));
    let settled = Instant::now();
    let attempts = load.snapshot();
    let fault = window(&attempts, cut, settled);
    let after_down = window(&attempts, down + Duration::from_millis(1500), settled);
    eprintln!(
        "blackhole: b1 DOWN after {} ms; {} connections failed (last {} ms after the cut), {} \
         served meanwhile (slowest {} ms: connect timed out, retried, redispatched); after \
         DOWN: {} ok, {} failed",
        ms(down - cut),
        fault.failed,
        fault.last_failure.map_or(0, |l| ms(l - cut)),
        fault.ok,
        ms(fault.slowest),
        after_down.ok,
        after_down.failed
    );
    assert!(
        fault.failed <= 2 * CLIENTS,
        "{} failures: {:?}",
        fault.failed,
        fault.errors
    );
    assert_eq!(after_down.failed, 0, "{:?}", after_down.errors);
    assert_eq!(after_down.by_b1, 0);

    let healed = Instant::now();
    lab.blackhole(false);
    let up = wait_log(&mut proxy, "Server echo/b1 is UP", Duration::from_secs(15));
    load.wait_served_by("b1", healed, Duration::from_secs(15));
    let attempts = load.finish();
    let after = window(&attempts, healed, Instant::now());
    eprintln!(
        "heal: b1 UP after {} ms; {} failures since",
        ms(up - healed),
        after.failed
    );
    assert_eq!(after.failed, 0, "{:?}", after.errors);
}

/// `count` connection cycles through the proxy with `clients` threads; returns failures.
fn cycles(front: u16, count: usize, clients: usize) -> usize {
    let per_client = count / clients;
    let threads: Vec<_> = (0..clients)
        .map(|n| {
            std::thread::spawn(move || {
                let mut failed = 0;
                for i in 0..per_client {
                    let line = format!("leak {n} {i}\n");
                    let target = SocketAddr::from(([127, 0, 0, 1], front));
                    match one_exchange(target, &line) {
                        Ok(answer) if answer == line => {}
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap_or(per_client))
        .sum()
}

#[test]
fn ten_thousand_connection_cycles_leak_no_descriptor_and_bounded_memory() {
    let backend = echo_server();
    let front = free_port();
    let cfg = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n\
         \x20   timeout server 10s\n\
         listen echo\n    bind 127.0.0.1:{front}\n    server s1 127.0.0.1:{backend} check inter 1s\n"
    );
    let mut proxy = Switchyard::start(BIN, &cfg).unwrap();
    let pid = proxy.pid();
    // Warm-up: thread pools, buffer pools and the allocator reach their working size.
    assert_eq!(cycles(front, 1_000, 4), 0);
    let settle = |limit: usize| {
        let started = Instant::now();
        loop {
            let (fds, rss) = switchyard_testkit::fds_and_rss(pid);
            if fds <= limit || started.elapsed() > Duration::from_secs(5) {
                return (fds, rss);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (fds_before, rss_before) = settle(0);
    let started = Instant::now();
    let failed = cycles(front, 10_000, 4);
    let took = started.elapsed();
    let (fds_after, rss_after) = settle(fds_before);
    eprintln!(
        "10,000 cycles in {} ms ({} failed): fds {fds_before} -> {fds_after}, VmRSS {rss_before} \
         KiB -> {rss_after} KiB ({:+} KiB)",
        ms(took),
        failed,
        rss_after as i64 - rss_before as i64
    );
    assert_eq!(failed, 0);
    assert!(
        fds_after <= fds_before + 2,
        "descriptors leaked: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "memory grew by {} KiB",
        rss_after - rss_before
    );
    assert!(proxy.stop(Duration::from_secs(10)).is_some());
}

/// Sends SIGCONT on drop, so a failed assertion never leaves a server stopped (its shutdown
/// would hang).
struct ContinueOnDrop(i32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling the PostgreSQL server this test started.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// One back-to-back pgbench run: when it ended, transactions done, clients aborted.
struct BenchRun {
    started: Instant,
    ended: Instant,
    transactions: u64,
    aborted: usize,
}

#[test]
fn pgbench_through_a_paused_postgres_loses_only_the_transactions_in_flight() {
    switchyard_testkit::require_postgres_or_return!();
    let a = switchyard_testkit::PgInstance::start_named("a").unwrap();
    let b = switchyard_testkit::PgInstance::start_named("b").unwrap();
    a.pgbench_init(1).unwrap();
    b.pgbench_init(1).unwrap();
    let front = free_port();
    let cfg = format!(
        "global\n    log stdout format raw local0 info\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1m\n\
         \x20   timeout server 1m\n    timeout check 500ms\n    retries 2\n    option redispatch\n\
         listen pg\n    bind 127.0.0.1:{front}\n    log global\n    balance roundrobin\n\
         \x20   option pgsql-check user postgres\n\
         \x20   default-server check inter 200ms fall 2 rise 2 on-marked-down shutdown-sessions\n\
         \x20   server a 127.0.0.1:{}\n    server b 127.0.0.1:{}\n",
        a.port(),
        b.port()
    );
    let mut proxy = Switchyard::start(BIN, &cfg).unwrap();
    // Continuous load: 1-second pgbench runs back to back, a new connection per transaction
    // (-C), 4 clients. pgbench aborts a client whose connection fails, so each run counts
    // the transactions that were in flight when it broke.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while running.load(Ordering::Relaxed) {
                let started = Instant::now();
                let report = switchyard_testkit::pgbench(
                    front,
                    &["-S", "-C", "-c", "4", "-j", "2", "-T", "1"],
                );
                // "client N aborted ..." per client (not "Run was aborted", its summary).
                let aborted_clients = |text: &str| {
                    text.lines()
                        .filter(|l| l.contains("client") && l.contains("aborted"))
                        .count()
                };
                let (transactions, aborted) = match report {
                    Ok(r) => (r.transactions, aborted_clients(&r.raw)),
                    Err(e) => (0, aborted_clients(&format!("{e:#}")).max(1)),
                };
                runs.push(BenchRun {
                    started,
                    ended: Instant::now(),
                    transactions,
                    aborted,
                });
            }
            runs
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let pid = b.pid().expect("b's postmaster") as i32;
    let paused = Instant::now();
    let guard = ContinueOnDrop(pid);
    // SAFETY: pausing the PostgreSQL server this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let down = wait_log(
        proxy.child(),
        "Server pg/b is DOWN",
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(3));
    let resumed = Instant::now();
    drop(guard);
    let up = wait_log(proxy.child(), "Server pg/b is UP", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    running.store(false, Ordering::Relaxed);
    let runs = load.join().unwrap();
    let sum = |pick: &dyn Fn(&BenchRun) -> bool| {
        runs.iter()
            .filter(|r| pick(r))
            .fold((0, 0, 0), |(n, t, a), r| {
                (n + 1, t + r.transactions, a + r.aborted)
            })
    };
    let before = sum(&|r| r.ended < paused);
    let hit = sum(&|r| r.ended >= paused && r.started < down + Duration::from_millis(500));
    let while_down = sum(&|r| r.started >= down + Duration::from_millis(500) && r.ended < resumed);
    let after = sum(&|r| r.started >= up);
    eprintln!(
        "pgbench -C, 4 clients, 1-s runs: before the pause {} runs / {} transactions / {} \
         aborted; b SIGSTOPed -> DOWN after {} ms; runs overlapping the fault {} / {} / {} \
         aborted; while b was DOWN {} / {} / {}; UP {} ms after SIGCONT, then {} / {} / {}",
        before.0,
        before.1,
        before.2,
        ms(down - paused),
        hit.0,
        hit.1,
        hit.2,
        while_down.0,
        while_down.1,
        while_down.2,
        ms(up - resumed),
        after.0,
        after.1,
        after.2
    );
    assert_eq!(before.2, 0, "aborted clients before any fault");
    // In flight: at most one connection per client was on b when it stopped.
    assert!(hit.2 <= 4, "{} clients aborted", hit.2);
    assert_eq!(while_down.2, 0, "aborted while b was DOWN");
    assert!(while_down.1 > 0, "no transaction while b was DOWN");
    assert_eq!(after.2, 0, "aborted after b came back");
    assert!(proxy.stop(Duration::from_secs(10)).is_some());
}
