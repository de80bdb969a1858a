//! Built-in VRRP in network namespaces the test creates: a bridge and three hosts (two
//! balancers and a client) on a private subnet that exists only inside those namespaces.
//! Clients connect through the virtual address while the master is killed, paused,
//! restarted and partitioned; a real keepalived takes part in the same group, as master and
//! as backup.
//!
//! Without root, iproute2, python3 or keepalived the tests say why and pass — unless `CI` is
//! set (CI runs them as root with `CI=true`): there a missing prerequisite fails the test, so
//! the VRRP tests cannot silently stop running.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_testkit::{have_command, libc, ChildGuard, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const PORT: u16 = 7000;

/// Namespaces `<prefix>br` (the bridge), `<prefix>a`, `<prefix>b`, `<prefix>c`, each host
/// with `eth0` on 10.250.N.0/24; removed (with everything running in them) on drop.
struct Lab {
    prefix: String,
    subnet: u8,
    _dir: TempDir,
    dir: std::path::PathBuf,
}

/// Whether we run in CI, where every prerequisite must be present.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A prerequisite is missing: fails in CI, otherwise prints why the test is skipped.
fn unavailable(reason: &str) {
    assert!(
        !in_ci(),
        "{reason}, and CI is set: the VRRP namespace tests must run in CI (as root, with \
         iproute2, python3 and keepalived installed)"
    );
    eprintln!("SKIP: {reason}");
}

/// Whether `command` is installed (else reported through [`unavailable`]).
fn have(command: &str) -> bool {
    let found = have_command(command);
    if !found {
        unavailable(&format!("{command} is not installed"));
    }
    found
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

impl Lab {
    /// None (with the reason printed; a failure in CI) when namespaces cannot be created
    /// here.
    fn new(tag: &str) -> Option<Lab> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            unavailable("network namespaces need root");
            return None;
        }
        if !have("ip") || !have("python3") {
            return None;
        }
        let id = std::process::id() % 10_000;
        let prefix = format!("sy{id}{tag}");
        // Tests run in parallel: each lab has its own subnet (and namespaces).
        let offset = match tag {
            "k" => 50,
            "r" => 100,
            _ => 0,
        };
        let subnet = ((std::process::id() % 100) as u8) + offset;
        let probe = format!("{prefix}probe");
        if !Command::new("ip")
            .args(["netns", "add", &probe])
            .status()
            .is_ok_and(|s| s.success())
        {
            unavailable("cannot create network namespaces");
            return None;
        }
        ip(&["netns", "del", &probe]);
        let dir = TempDir::new("switchyard-vrrp").unwrap();
        let lab = Lab {
            prefix: prefix.clone(),
            subnet,
            dir: dir.path().to_path_buf(),
            _dir: dir,
        };
        let br = lab.ns("br");
        ip(&["netns", "add", &br]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for (host, last) in [("a", 1), ("b", 2), ("c", 10)] {
            let ns = lab.ns(host);
            let (inside, port) = (format!("{prefix}{host}"), format!("{prefix}{host}p"));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &port,
            ]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &port, "netns", &br]);
            ip(&["-n", &ns, "link", "set", &inside, "name", "eth0"]);
            ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &port, "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let address = format!("{}/24", lab.host(last));
            ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"]);
        }
        Some(lab)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn host(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 250, self.subnet, last)
    }

    fn vip(&self) -> Ipv4Addr {
        self.host(100)
    }

    /// Whether `host`'s eth0 holds the virtual address.
    fn holds_vip(&self, host: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.ns(host), "-4", "-o", "addr", "show", "eth0"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(&format!("{}/", self.vip()))
    }

    /// The MAC address of `host`'s eth0.
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

    /// The MAC the client's neighbour table holds for the virtual address (empty if none).
    fn client_neighbour(&self) -> String {
        let vip = self.vip().to_string();
        let out = Command::new("ip")
            .args(["-n", &self.ns("c"), "neigh", "show", &vip, "dev", "eth0"])
            .output()
            .expect("ip neigh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let after = text.split("lladdr ").nth(1).unwrap_or_default();
        after
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Takes `host` off the bridge (or puts it back): a partition.
    fn cable(&self, host: &str, connected: bool) {
        let port = format!("{}{host}p", self.prefix);
        let state = if connected { "up" } else { "down" };
        ip(&["-n", &self.ns("br"), "link", "set", &port, state]);
    }

    /// A process in `host`'s namespace.
    fn spawn(&self, host: &str, command: &[&str]) -> ChildGuard {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]).args(command);
        ChildGuard::spawn(&mut cmd).expect("spawning in a namespace")
    }

    /// A backend on 127.0.0.1:7001 inside `host` answering its host name.
    fn greeter(&self, host: &str, port: u16) -> ChildGuard {
        let script = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',{port}))\ns.listen(64)\n\
             while True:\n    c,_=s.accept()\n    c.sendall(b'{host}\\n')\n    c.close()\n"
        );
        self.spawn(host, &["python3", "-c", &script])
    }

    /// Switchyard in `host` with a `notify` hook that appends its arguments to
    /// [`Lab::notified`]'s file.
    fn balancer(&self, host: &str, priority: u8, advert: &str) -> ChildGuard {
        let hook = self.dir.join(format!("notify-{host}.sh"));
        let log = self.dir.join(format!("notify-{host}.log"));
        std::fs::write(
            &hook,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let config = format!(
            "vrrp_instance VI_1\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    \
             advert_int {advert}\n    virtual_ipaddress {}/24\n    notify \"{}\"\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             listen db\n    bind :{PORT}\n    server local 127.0.0.1:7001\n",
            self.vip(),
            hook.display()
        );
        let path = self.dir.join(format!("{host}.cfg"));
        std::fs::write(&path, config).unwrap();
        self.spawn(host, &[BIN, "-f", path.to_str().unwrap()])
    }

    /// The lines the `notify` hook of `host` wrote so far.
    fn notified(&self, host: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(format!("notify-{host}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < timeout, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
        start.elapsed()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in ["a", "b", "c", "br"] {
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

/// Connection attempts: when each ended, and who answered (None: it failed).
type Attempts = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// A client in the `c` namespace connecting to VIP:7000 every 20 ms; records every attempt
/// (when it ended, who answered or None for a failure).
struct Client {
    running: Arc<AtomicBool>,
    attempts: Attempts,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(lab: &Lab) -> Client {
        let netns = std::fs::File::open(format!("/var/run/netns/{}", lab.ns("c"))).unwrap();
        let target = SocketAddr::from((lab.vip(), PORT));
        let running = Arc::new(AtomicBool::new(true));
        let attempts: Attempts = Arc::default();
        let thread = {
            let (running, attempts) = (running.clone(), attempts.clone());
            std::thread::spawn(move || {
                // SAFETY: moves only this thread into the client's network namespace.
                let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(entered, 0, "setns failed");
                while running.load(Ordering::Relaxed) {
                    let answer = TcpStream::connect_timeout(&target, Duration::from_millis(200))
                        .and_then(|mut s| {
                            s.set_read_timeout(Some(Duration::from_millis(500)))?;
                            let mut text = String::new();
                            s.read_to_string(&mut text)?;
                            Ok(text.trim().to_string())
                        });
                    let host = answer.ok().filter(|host| !host.is_empty());
                    attempts.lock().unwrap().push((Instant::now(), host));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Client {
            running,
            attempts,
            thread: Some(thread),
        }
    }

    fn served_by(&self) -> String {
        let attempts = self.attempts.lock().unwrap();
        let last = attempts.iter().rev().find_map(|(_, host)| host.clone());
        last.unwrap_or_default()
    }

    /// Waits until `host` answers (after `since`); returns how long after `since` it first
    /// did.
    fn wait_for(&self, host: &str, since: Instant, timeout: Duration) -> Duration {
        loop {
            {
                let attempts = self.attempts.lock().unwrap();
                let first = attempts
                    .iter()
                    .find(|(when, who)| *when > since && who.as_deref() == Some(host));
                if let Some((when, _)) = first {
                    return when.duration_since(since);
                }
            }
            assert!(
                since.elapsed() < timeout,
                "{host} did not answer within {timeout:?} (last: {})",
                self.served_by()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Failed connections that ended after `since`.
    fn failures_since(&self, since: Instant) -> usize {
        let attempts = self.attempts.lock().unwrap();
        attempts
            .iter()
            .filter(|(when, who)| *when > since && who.is_none())
            .count()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Longest time both balancers held the address at once, sampled every 5 ms for `span`.
fn longest_double_master(lab: &Lab, span: Duration) -> Duration {
    let (start, mut since, mut longest) = (Instant::now(), None::<Instant>, Duration::ZERO);
    while start.elapsed() < span {
        let both = lab.holds_vip("a") && lab.holds_vip("b");
        match (both, since) {
            (true, None) => since = Some(Instant::now()),
            (false, Some(t)) => {
                longest = longest.max(t.elapsed());
                since = None;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(t) = since {
        longest = longest.max(t.elapsed());
    }
    longest
}

/// Waits until the `notify` hook of `host` has reported `expected` in this order (other
/// lines may come between; hooks run asynchronously).
fn expect_notified(lab: &Lab, host: &str, expected: &[&str]) {
    let reported = |lines: &[String]| {
        let mut lines = lines.iter();
        expected
            .iter()
            .all(|want| lines.any(|line| line.as_str() == *want))
    };
    let start = Instant::now();
    while !reported(&lab.notified(host)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "notify hook of {host} reported {:?}, expected {expected:?} in this order",
            lab.notified(host)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_balancers_move_the_address_on_kill_pause_restart_and_partition() {
    let Some(lab) = Lab::new("s") else { return };
    let advert = Duration::from_millis(200);
    let _ga = lab.greeter("a", 7001);
    let _gb = lab.greeter("b", 7001);
    let a = lab.balancer("a", 150, "0.2");
    let _b = lab.balancer("b", 100, "0.2");
    let client = Client::start(&lab);
    client.wait_for("a", Instant::now(), Duration::from_secs(10));
    assert!(!lab.holds_vip("b"));
    // keepalived's `notify` arguments: INSTANCE <name> <STATE> <priority>.
    expect_notified(
        &lab,
        "a",
        &["INSTANCE VI_1 BACKUP 150", "INSTANCE VI_1 MASTER 150"],
    );
    expect_notified(&lab, "b", &["INSTANCE VI_1 BACKUP 100"]);

    // The master dies without a word: the backup waits for the master-down interval.
    let killed = Instant::now();
    a.signal(libc::SIGKILL);
    let took = client.wait_for("b", killed, Duration::from_secs(10));
    let failed = client.failures_since(killed);
    eprintln!(
        "kill -9 of the master: served by the backup after {took:?}, {failed} failed connections"
    );
    expect_notified(
        &lab,
        "b",
        &["INSTANCE VI_1 BACKUP 100", "INSTANCE VI_1 MASTER 100"],
    );
    drop(a);

    // A restarted higher-priority node preempts (first removing the address its killed
    // predecessor left on the interface).
    let restarted = Instant::now();
    let a = lab.balancer("a", 150, "0.2");
    let took = client.wait_for("a", restarted, Duration::from_secs(10));
    eprintln!("restarted master preempts: served by it again after {took:?}");
    expect_notified(
        &lab,
        "b",
        &[
            "INSTANCE VI_1 BACKUP 100",
            "INSTANCE VI_1 MASTER 100",
            "INSTANCE VI_1 BACKUP 100",
        ],
    );

    // Paused (SIGSTOP): the backup takes over and the client follows it; on SIGCONT the old
    // master hears the backup's lower advertisements (queued while it was frozen), reasserts
    // and announces the address again, so the client comes back to it — with no long
    // double-master period.
    let paused = Instant::now();
    a.signal(libc::SIGSTOP);
    let took = client.wait_for("b", paused, Duration::from_secs(10));
    let failed = client.failures_since(paused);
    eprintln!(
        "SIGSTOP of the master: served by the backup after {took:?}, {failed} failed connections"
    );
    let resumed = Instant::now();
    a.signal(libc::SIGCONT);
    let overlap = longest_double_master(&lab, Duration::from_secs(2));
    eprintln!("after SIGCONT: both held the address for at most {overlap:?}");
    assert!(
        overlap <= advert + Duration::from_millis(100),
        "{overlap:?}"
    );
    let took = client.wait_for("a", resumed, Duration::from_secs(10));
    let failed = client.failures_since(resumed);
    eprintln!(
        "after SIGCONT: served by the old master after {took:?}, {failed} failed connections"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Partition of the backup: both become master (unavoidable); once healed, one steps down
    // within an advertisement interval, and the deposed one stops announcing the address
    // (the client, on the master's side, keeps being served).
    lab.cable("b", false);
    lab.wait(
        "b to claim the address while partitioned",
        Duration::from_secs(10),
        || lab.holds_vip("b"),
    );
    let healed = Instant::now();
    lab.cable("b", true);
    let overlap = longest_double_master(&lab, Duration::from_secs(2));
    eprintln!("backup's partition healed: both held the address for at most {overlap:?}");
    assert!(
        overlap <= advert + Duration::from_millis(100),
        "{overlap:?}"
    );
    assert!(lab.holds_vip("a") && !lab.holds_vip("b"));
    std::thread::sleep(Duration::from_millis(1500)); // past the deposed node's ARP schedule
    let failed = client.failures_since(healed);
    eprintln!("backup's partition healed: {failed} failed connections in the 3.5 s after");
    assert_eq!(lab.client_neighbour(), lab.mac("a"));
    assert_eq!(client.served_by(), "a");

    // Partition of the master: the client is on the backup's side and follows it. Once
    // healed, the master (higher priority) takes back and announces the address again;
    // the client is back on it within about an advertisement interval.
    let cut = Instant::now();
    lab.cable("a", false);
    let took = client.wait_for("b", cut, Duration::from_secs(10));
    eprintln!("master partitioned: the client is served by the backup after {took:?}");
    // A real partition lasts: let the backup's announcements end.
    std::thread::sleep(Duration::from_millis(2500));
    let healed = Instant::now();
    lab.cable("a", true);
    let overlap = longest_double_master(&lab, Duration::from_secs(2));
    let took = client.wait_for("a", healed, Duration::from_secs(10));
    let failed = client.failures_since(healed);
    eprintln!(
        "master's partition healed: both held the address for at most {overlap:?}; the client \
         is served by the master after {took:?}, {failed} failed connections"
    );
    assert!(
        overlap <= advert + Duration::from_millis(100),
        "{overlap:?}"
    );
    // Without the re-announcement the client would hold the backup's MAC until its
    // neighbour entry expires (tens of seconds).
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        failed <= 10,
        "{failed} failed connections after the partition healed"
    );

    // A clean stop resigns (priority 0): the backup takes over after its skew time only.
    let stopped = Instant::now();
    a.signal(libc::SIGTERM);
    let took = client.wait_for("b", stopped, Duration::from_secs(10));
    eprintln!("SIGTERM of the master: served by the backup after {took:?}");
    assert!(
        took < advert * 3,
        "resigning should beat the master-down interval: {took:?}"
    );
}

/// keepalived in `b` (vrrp only, in the foreground), serving the port itself.
fn keepalived(lab: &Lab, state: &str, priority: u8) -> ChildGuard {
    let conf = lab.dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n    vrrp_version 3\n    router_id b\n}}\n\
             vrrp_instance VI_1 {{\n    state {state}\n    interface eth0\n    virtual_router_id 51\n    \
             priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        {}/24\n    }}\n}}\n",
            lab.vip()
        ),
    )
    .unwrap();
    let pid = lab.dir.join("keepalived.pid");
    let vrrp_pid = lab.dir.join("vrrp.pid");
    lab.spawn(
        "b",
        &[
            "keepalived",
            "-n",
            "-l",
            "-P",
            "-f",
            conf.to_str().unwrap(),
            "-p",
            pid.to_str().unwrap(),
            "-r",
            vrrp_pid.to_str().unwrap(),
        ],
    )
}

#[test]
fn switchyard_and_keepalived_fail_over_to_each_other() {
    if !have("keepalived") {
        return;
    }
    let Some(lab) = Lab::new("k") else { return };
    let _ga = lab.greeter("a", 7001);
    // keepalived's node serves the port directly.
    let _gb = lab.greeter("b", PORT);
    let _keepalived = keepalived(&lab, "BACKUP", 100);
    let a = lab.balancer("a", 150, "1");
    let client = Client::start(&lab);
    client.wait_for("a", Instant::now(), Duration::from_secs(15));

    let stopped = Instant::now();
    a.signal(libc::SIGKILL);
    let took = client.wait_for("b", stopped, Duration::from_secs(15));
    let failed = client.failures_since(stopped);
    eprintln!(
        "Switchyard master killed: keepalived serves the address after {took:?}, {failed} failed connections"
    );
    drop(a);

    let restarted = Instant::now();
    let _a = lab.balancer("a", 150, "1");
    let took = client.wait_for("a", restarted, Duration::from_secs(15));
    eprintln!("Switchyard back with a higher priority: it takes the address from keepalived after {took:?}");
    assert!(!lab.holds_vip("b"));
}

#[test]
fn keepalived_master_and_switchyard_backup_fail_over_to_each_other() {
    if !have("keepalived") {
        return;
    }
    let Some(lab) = Lab::new("r") else { return };
    let _ga = lab.greeter("a", 7001);
    let _gb = lab.greeter("b", PORT);
    let keepalived_master = keepalived(&lab, "MASTER", 150);
    let client = Client::start(&lab);
    client.wait_for("b", Instant::now(), Duration::from_secs(15));

    // Switchyard, lower priority, must stay backup while keepalived advertises: that it
    // does not claim the address after its master-down interval (3 × 1 s + skew) proves it
    // decodes keepalived's advertisements.
    let started = Instant::now();
    let mut a = lab.balancer("a", 100, "1");
    a.wait_for_output("Entering BACKUP STATE", Duration::from_secs(10))
        .unwrap();
    while started.elapsed() < Duration::from_secs(6) {
        assert!(
            !lab.holds_vip("a"),
            "Switchyard claimed the address while keepalived (priority 150) advertises"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!a.output_so_far().contains("Entering MASTER STATE"));
    assert_eq!(client.served_by(), "b");
    assert_eq!(client.failures_since(started), 0);

    // keepalived dies without a word (both processes): Switchyard takes over after its
    // master-down interval. The dead node's kernel still holds the address; Switchyard's
    // gratuitous ARPs move the client.
    let killed = Instant::now();
    keepalived_master.signal_group(libc::SIGKILL);
    let took = client.wait_for("a", killed, Duration::from_secs(15));
    let failed = client.failures_since(killed);
    eprintln!(
        "keepalived master killed: Switchyard serves the address after {took:?}, {failed} failed connections"
    );
    assert!(lab.holds_vip("a"));
    expect_notified(
        &lab,
        "a",
        &["INSTANCE VI_1 BACKUP 100", "INSTANCE VI_1 MASTER 100"],
    );
    drop(keepalived_master);

    // keepalived back (higher priority): it preempts, Switchyard steps down.
    let restarted = Instant::now();
    let _keepalived = keepalived(&lab, "MASTER", 150);
    let took = client.wait_for("b", restarted, Duration::from_secs(15));
    let failed = client.failures_since(restarted);
    eprintln!(
        "keepalived restarted with a higher priority: it takes the address from Switchyard after {took:?}, {failed} failed connections"
    );
    lab.wait(
        "Switchyard to release the address",
        Duration::from_secs(5),
        || !lab.holds_vip("a"),
    );
    expect_notified(
        &lab,
        "a",
        &[
            "INSTANCE VI_1 BACKUP 100",
            "INSTANCE VI_1 MASTER 100",
            "INSTANCE VI_1 BACKUP 100",
        ],
    );
}
