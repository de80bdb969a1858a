//! Process management: daemon mode with a pid file, start-up errors reported by the
//! command, systemd's notify protocol across a reload, and `-sf`/`-st` replacing a running
//! process.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_testkit::libc;
use switchyard_testkit::{
    free_port, greeter, greeting_through, run_with_timeout, ChildGuard, TempDir,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn config(front: u16, server: u16) -> String {
    format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         listen db\n    bind 127.0.0.1:{front}\n    server s1 127.0.0.1:{server}\n"
    )
}

/// Switchyard on `cfg`, once it listens on `front`.
fn start(cfg: &Path, front: u16) -> ChildGuard {
    let child = ChildGuard::spawn(Command::new(BIN).arg("-f").arg(cfg)).unwrap();
    switchyard_testkit::wait_for_port(
        format!("127.0.0.1:{front}").parse().unwrap(),
        Duration::from_secs(10),
    )
    .unwrap();
    child
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && !zombie(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A child of this test that exited but was not reaped yet.
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split(' ').nth(2) == Some("Z"))
        .unwrap_or(true)
}

/// Kills a daemon (not a child of the test) if the test fails half-way.
struct DaemonGuard(i32);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: plain kill of the daemon this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn daemon_mode_returns_once_listening_and_keeps_a_pid_file() {
    let dir = TempDir::new("switchyard-daemon").unwrap();
    let (front, s1) = (free_port(), greeter("s1"));
    let cfg = write(dir.path(), "sy.cfg", &config(front, s1));
    let pidfile = dir.path().join("sy.pid");
    let out = run_with_timeout(
        Command::new(BIN)
            .arg("-D")
            .arg("-f")
            .arg(&cfg)
            .arg("-p")
            .arg(&pidfile),
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = DaemonGuard(pid);
    assert!(alive(pid));
    // The command returned only once the daemon was listening.
    assert_eq!(greeting_through(front), "s1");
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(wait_gone(pid), "the daemon did not stop");
    assert!(!pidfile.exists(), "the pid file is removed at exit");
}

#[test]
fn a_daemon_that_cannot_start_fails_the_command_with_the_reason() {
    let dir = TempDir::new("switchyard-daemon").unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let cfg = write(dir.path(), "sy.cfg", &config(taken, 1));
    let out = run_with_timeout(
        Command::new(BIN).arg("-D").arg("-f").arg(&cfg),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot bind") && stderr.contains("sy.cfg:"),
        "{stderr}"
    );
}

#[test]
fn systemd_is_told_ready_reloading_and_stopping() {
    let dir = TempDir::new("switchyard-notify").unwrap();
    let (front, s1) = (free_port(), greeter("s1"));
    let cfg = write(dir.path(), "sy.cfg", &config(front, s1));
    let socket_path = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&socket_path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let next = |waiting_for: &str| {
        let mut buf = [0u8; 512];
        let n = systemd
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification while waiting for {waiting_for}: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut child = ChildGuard::spawn(
        Command::new(BIN)
            .arg("-Ws")
            .arg("-f")
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &socket_path),
    )
    .unwrap();
    assert_eq!(next("READY at start"), "READY=1\n");
    assert_eq!(greeting_through(front), "s1");
    child.signal(libc::SIGHUP);
    let reloading = next("RELOADING after SIGHUP");
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next("READY after the reload"), "READY=1\n");
    child.signal(libc::SIGTERM);
    assert_eq!(next("STOPPING after SIGTERM"), "STOPPING=1\n");
    assert!(child.wait_timeout(Duration::from_secs(10)).is_some());
}

#[test]
fn sf_replaces_a_running_process_which_drains_and_exits() {
    let dir = TempDir::new("switchyard-sf").unwrap();
    let (front, s1) = (free_port(), greeter("s1"));
    let cfg = write(dir.path(), "sy.cfg", &config(front, s1));
    let mut old = start(&cfg, front);
    assert_eq!(greeting_through(front), "s1");
    // The new process sends to an echo server, to tell who answers.
    let echo = switchyard_testkit::echo_server();
    let cfg_echo = write(dir.path(), "echo.cfg", &config(front, echo));
    let old_pid = old.pid().to_string();
    let mut new = ChildGuard::spawn(
        Command::new(BIN)
            .arg("-f")
            .arg(&cfg_echo)
            .arg("-sf")
            .arg(&old_pid),
    )
    .unwrap();
    assert!(
        old.wait_timeout(Duration::from_secs(10)).is_some(),
        "the old process did not exit after -sf"
    );
    assert!(new.is_running());
    // Only the new process (its configuration sends to the echo server) answers now.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", front)).unwrap();
    stream.write_all(b"ping").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0; 4];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
}

/// `-st`: the old process is terminated at once, its sessions closed (as HAProxy does), not
/// drained like with `-sf`.
#[test]
fn st_terminates_the_running_process_once_the_new_one_listens() {
    use std::io::Read;

    let dir = TempDir::new("switchyard-st").unwrap();
    let (front, echo) = (free_port(), switchyard_testkit::echo_server());
    let cfg = write(dir.path(), "sy.cfg", &config(front, echo));
    let mut old = start(&cfg, front);
    // An idle session through the old process: draining would keep it for `timeout client`
    // (10 s).
    let mut session = std::net::TcpStream::connect(("127.0.0.1", front)).unwrap();
    session
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The new process sends to a greeter, to tell who answers.
    let s2 = greeter("s2");
    let cfg_new = write(dir.path(), "new.cfg", &config(front, s2));
    let started = Instant::now();
    let mut new = ChildGuard::spawn(
        Command::new(BIN)
            .arg("-f")
            .arg(&cfg_new)
            .arg("-st")
            .arg(old.pid().to_string()),
    )
    .unwrap();
    let exited = old.wait_timeout(Duration::from_secs(15));
    let took = started.elapsed();
    assert!(exited.is_some(), "the old process did not exit after -st");
    let mut rest = Vec::new();
    let closed = session.read_to_end(&mut rest);
    eprintln!(
        "-st: old process gone {} ms after the new one was started, its idle session closed ({closed:?})",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(new.is_running(), "{}", new.output_so_far());
    for _ in 0..3 {
        assert_eq!(greeting_through(front), "s2");
    }
}

#[test]
fn grace_keeps_accepting_for_a_while_after_a_stop_signal() {
    let dir = TempDir::new("switchyard-grace").unwrap();
    let (front, s1) = (free_port(), greeter("s1"));
    let cfg = write(
        dir.path(),
        "sy.cfg",
        &format!("global\n    grace 1500ms\n{}", config(front, s1)),
    );
    let mut child = start(&cfg, front);
    let signalled = Instant::now();
    child.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Still within the grace period: served.
    assert_eq!(greeting_through(front), "s1");
    assert!(child.wait_timeout(Duration::from_secs(10)).is_some());
    assert!(
        signalled.elapsed() >= Duration::from_millis(1400),
        "stopped before the grace period ended: {:?}",
        signalled.elapsed()
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", front)).is_err());
}

/// A soft stop waits for every connection accepted before it, also one not set up yet: here
/// one still sending its PROXY header. It used to be counted only once set up, and the
/// process exited under it.
#[test]
fn a_soft_stop_waits_for_a_connection_still_in_its_proxy_header() {
    use std::io::{Read, Write};

    let dir = TempDir::new("switchyard-soft-proxy").unwrap();
    let (front, echo) = (free_port(), switchyard_testkit::echo_server());
    let cfg = write(
        dir.path(),
        "sy.cfg",
        &format!(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
             listen db\n    bind 127.0.0.1:{front} accept-proxy\n    server s1 127.0.0.1:{echo}\n"
        ),
    );
    let mut child = start(&cfg, front);
    let mut client = std::net::TcpStream::connect(("127.0.0.1", front)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(b"PROXY TCP4 192.0.2.7 ").unwrap();
    // Accepted and reading its header when the stop comes.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.signal(libc::SIGUSR1));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.is_running(),
        "the process exited under a connection it had accepted: {}",
        child.output_so_far()
    );
    client.write_all(b"127.0.0.1 40000 8080\r\nping").unwrap();
    let mut answer = [0; 4];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"ping");
    drop(client);
    assert!(
        child.wait_timeout(Duration::from_secs(10)).is_some(),
        "the process did not exit once its last connection closed"
    );
}

/// A binary upgrade under load: the new process takes the listening sockets of the old one
/// through its stats socket (`-x`, `expose-fd listeners`) and tells it to finish (`-sf`).
/// Clients opening connections all along see no failure.
#[test]
fn x_and_sf_replace_the_process_under_load_without_a_failed_connection() {
    use std::io::{Read, Write};

    let dir = TempDir::new("switchyard-x").unwrap();
    let front = free_port();
    let echo = switchyard_testkit::echo_server();
    let socket = dir.path().join("admin.sock");
    let cfg = write(
        dir.path(),
        "sy.cfg",
        &format!(
            "global\n    stats socket {} level admin expose-fd listeners\n    noreuseport\n{}",
            socket.display(),
            config(front, echo)
        ),
    );
    let mut old = start(&cfg, front);

    let load = switchyard_testkit::EchoLoad::start(front, 4);
    std::thread::sleep(Duration::from_millis(300));
    // `noreuseport`: without the handed-over sockets the new process could not even bind.
    let mut new = ChildGuard::spawn(
        Command::new(BIN)
            .arg("-f")
            .arg(&cfg)
            .arg("-x")
            .arg(&socket)
            .arg("-sf")
            .arg(old.pid().to_string()),
    )
    .unwrap();
    assert!(
        old.wait_timeout(Duration::from_secs(15)).is_some(),
        "the old process did not exit; new process output:\n{}",
        new.output_so_far()
    );
    std::thread::sleep(Duration::from_millis(300));
    let report = load.finish();
    eprintln!(
        "binary hand-over (-x, -sf) under load: {} connections succeeded, {} failed",
        report.succeeded,
        report.failures.len()
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // Clients really ran across the hand-over, not just before it.
    assert!(report.succeeded > 0, "no connection went through");
    assert!(new.is_running(), "{}", new.output_so_far());
    // The replacement serves, and its stats socket answers at the same path.
    let mut admin = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    admin.write_all(b"show servers state\n").unwrap();
    let mut reply = String::new();
    admin.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("1\n# be_id"), "{reply}");
}
