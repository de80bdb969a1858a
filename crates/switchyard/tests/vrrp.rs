//! Built-in VRRP in network namespaces the test creates: a bridge and three hosts (two
//! balancers and a client) on a private subnet that exists only inside those namespaces.
//! Clients connect through the virtual address while the master is killed, paused,
//! restarted and partitioned; a real keepalived takes part in the same group.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// None (with the reason printed) when namespaces cannot be created here.
    fn new(tag: &str) -> Option<Lab> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !have_command("ip") {
            eprintln!("SKIP: network namespaces need root and iproute2");
            return None;
        }
        let id = std::process::id() % 10_000;
        let prefix = format!("sy{id}{tag}");
        let subnet = (std::process::id() % 200) as u8 + u8::from(tag == "k") * 50;
        let probe = format!("{prefix}probe");
        if !Command::new("ip")
            .args(["netns", "add", &probe])
            .status()
            .is_ok_and(|s| s.success())
        {
            eprintln!("SKIP: cannot create network namespaces");
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

    fn balancer(&self, host: &str, priority: u8, advert: &str) -> ChildGuard {
        let config = format!(
            "vrrp_instance VI_1\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    \
             advert_int {advert}\n    virtual_ipaddress {}/24\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             listen db\n    bind :{PORT}\n    server local 127.0.0.1:7001\n",
            self.vip()
        );
        let path = self.dir.join(format!("{host}.cfg"));
        std::fs::write(&path, config).unwrap();
        self.spawn(host, &[BIN, "-f", path.to_str().unwrap()])
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

/// A client in the `c` namespace connecting to VIP:7000 every 20 ms; records who answered.
struct Client {
    running: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
    last: Arc<Mutex<(String, Instant)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(lab: &Lab) -> Client {
        let netns = std::fs::File::open(format!("/var/run/netns/{}", lab.ns("c"))).unwrap();
        let target = SocketAddr::from((lab.vip(), PORT));
        let running = Arc::new(AtomicBool::new(true));
        let failures = Arc::new(AtomicU64::new(0));
        let last = Arc::new(Mutex::new((String::new(), Instant::now())));
        let thread = {
            let (running, failures, last) = (running.clone(), failures.clone(), last.clone());
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
                    match answer {
                        Ok(host) if !host.is_empty() => {
                            *last.lock().unwrap() = (host, Instant::now());
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Client {
            running,
            failures,
            last,
            thread: Some(thread),
        }
    }

    fn served_by(&self) -> String {
        self.last.lock().unwrap().0.clone()
    }

    /// Waits until `host` answers (after `since`); returns how long that took.
    fn wait_for(&self, host: &str, since: Instant, timeout: Duration) -> Duration {
        loop {
            {
                let (who, when) = &*self.last.lock().unwrap();
                if who == host && *when > since {
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

    fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
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

#[test]
fn two_balancers_move_the_address_on_kill_pause_restart_and_partition() {
    let Some(lab) = Lab::new("s") else { return };
    if !have_command("python3") {
        eprintln!("SKIP: python3 is needed for the namespace backends");
        return;
    }
    let advert = Duration::from_millis(200);
    let _ga = lab.greeter("a", 7001);
    let _gb = lab.greeter("b", 7001);
    let a = lab.balancer("a", 150, "0.2");
    let _b = lab.balancer("b", 100, "0.2");
    let client = Client::start(&lab);
    client.wait_for("a", Instant::now(), Duration::from_secs(10));
    assert!(!lab.holds_vip("b"));

    // The master dies without a word: the backup waits for the master-down interval.
    let before = client.failures();
    let killed = Instant::now();
    a.signal(libc::SIGKILL);
    let took = client.wait_for("b", killed, Duration::from_secs(10));
    let failed = client.failures() - before;
    eprintln!(
        "kill -9 of the master: served by the backup after {took:?}, {failed} failed connections"
    );
    drop(a);

    // A restarted higher-priority node preempts (first removing the address its killed
    // predecessor left on the interface).
    let restarted = Instant::now();
    let a = lab.balancer("a", 150, "0.2");
    let took = client.wait_for("a", restarted, Duration::from_secs(10));
    eprintln!("restarted master preempts: served by it again after {took:?}");

    // Paused (SIGSTOP): the backup takes over; on SIGCONT the old master sees the backup's
    // advertisements... and, having the higher priority, takes back — with no long
    // double-master period.
    let before = client.failures();
    let paused = Instant::now();
    a.signal(libc::SIGSTOP);
    let took = client.wait_for("b", paused, Duration::from_secs(10));
    let failed = client.failures() - before;
    eprintln!(
        "SIGSTOP of the master: served by the backup after {took:?}, {failed} failed connections"
    );
    a.signal(libc::SIGCONT);
    let overlap = longest_double_master(&lab, Duration::from_secs(2));
    eprintln!("after SIGCONT: both held the address for at most {overlap:?}");
    assert!(
        overlap <= advert + Duration::from_millis(100),
        "{overlap:?}"
    );
    client.wait_for("a", Instant::now(), Duration::from_secs(10));

    // Partition: both become master (unavoidable); once healed, one steps down within an
    // advertisement interval.
    let port_b = format!("{}bp", lab.prefix);
    ip(&["-n", &lab.ns("br"), "link", "set", &port_b, "down"]);
    lab.wait(
        "b to claim the address while partitioned",
        Duration::from_secs(10),
        || lab.holds_vip("b"),
    );
    ip(&["-n", &lab.ns("br"), "link", "set", &port_b, "up"]);
    let overlap = longest_double_master(&lab, Duration::from_secs(2));
    eprintln!("partition healed: both held the address for at most {overlap:?}");
    assert!(
        overlap <= advert + Duration::from_millis(100),
        "{overlap:?}"
    );
    assert!(lab.holds_vip("a") && !lab.holds_vip("b"));

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

#[test]
fn switchyard_and_keepalived_fail_over_to_each_other() {
    if !have_command("keepalived") {
        eprintln!("SKIP: keepalived is not installed");
        return;
    }
    let Some(lab) = Lab::new("k") else { return };
    let _ga = lab.greeter("a", 7001);
    // keepalived's node serves the port directly.
    let _gb = lab.greeter("b", PORT);
    let conf = lab.dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n    vrrp_version 3\n    router_id b\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
             priority 100\n    advert_int 1\n    virtual_ipaddress {{\n        {}/24\n    }}\n}}\n",
            lab.vip()
        ),
    )
    .unwrap();
    let pid = lab.dir.join("keepalived.pid");
    let vrrp_pid = lab.dir.join("vrrp.pid");
    let _keepalived = lab.spawn(
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
    );
    let a = lab.balancer("a", 150, "1");
    let client = Client::start(&lab);
    client.wait_for("a", Instant::now(), Duration::from_secs(15));

    let stopped = Instant::now();
    a.signal(libc::SIGKILL);
    let took = client.wait_for("b", stopped, Duration::from_secs(15));
    eprintln!("Switchyard master killed: keepalived serves the address after {took:?}");
    drop(a);

    let restarted = Instant::now();
    let _a = lab.balancer("a", 150, "1");
    let took = client.wait_for("a", restarted, Duration::from_secs(15));
    eprintln!("Switchyard back with a higher priority: it takes the address from keepalived after {took:?}");
    assert!(!lab.holds_vip("b"));
}
