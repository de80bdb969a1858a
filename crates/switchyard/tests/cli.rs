//! The command line: `-c` validation, the demo, and plain forwarding through the real binary.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use switchyard_testkit::{free_port, wait_for_port, ChildGuard};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn write_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.cfg");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn check_mode_accepts_a_valid_file() {
    let (_dir, path) = write_config(
        "global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 1s\n\
         listen pg\n    bind 127.0.0.1:15432\n    server a 127.0.0.1:5432 check\n",
    );
    let out = Command::new(BIN)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Configuration file is valid"));
}

#[test]
fn check_mode_reports_file_and_line_and_exits_1() {
    let (_dir, path) = write_config(
        "defaults\n    mode tcp\nlisten pg\n    bind 127.0.0.1:15432\n    balance fastest\n    frobnicate yes\n",
    );
    let out = Command::new(BIN)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:5:")),
        "balance line not named: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:6:")),
        "unknown keyword not named: {stderr}"
    );
    assert!(stderr.contains("frobnicate"), "{stderr}");
}

#[test]
fn check_mode_reports_errors_across_several_files() {
    let (dir, first) = write_config("defaults\n    mode tcp\n");
    let second = dir.path().join("second.cfg");
    std::fs::write(&second, "backend b\n    server s 127.0.0.1:99999\n").unwrap();
    let out = Command::new(BIN)
        .args(["-c", "-f"])
        .arg(&first)
        .arg("-f")
        .arg(&second)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", second.display())),
        "{stderr}"
    );
}

fn ask(port: u16, line: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    reply.trim_end().to_string()
}

#[test]
fn demo_balances_round_robin_over_three_backends() {
    // The demo needs 13 consecutive ports; find a base whose range is free.
    let base = loop {
        let base = free_port();
        if base < 60000
            && [0u16, 1, 2, 3, 10, 11, 12]
                .iter()
                .all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok())
        {
            break base;
        }
    };
    let mut demo =
        ChildGuard::spawn(Command::new(BIN).args(["demo", "--port", &base.to_string()])).unwrap();
    wait_for_port(
        format!("127.0.0.1:{base}").parse().unwrap(),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("demo did not listen: {e}\n{}", demo.output_so_far()));
    // Let the readiness probe's own session finish, so it does not take a turn below.
    std::thread::sleep(Duration::from_millis(300));
    let replies: Vec<String> = (0..6).map(|_| ask(base, "hello")).collect();
    let expected: Vec<String> = (0..3)
        .map(|i| format!("backend-db{} at {}: hello", i + 1, base + 10 + i))
        .collect();
    for reply in &replies {
        assert!(expected.contains(reply), "unexpected reply {reply:?}");
    }
    // Round robin: three different backends in a row, then the same rotation again.
    for i in 0..3 {
        assert_ne!(replies[i], replies[i + 1], "{replies:?}");
        assert_eq!(replies[i], replies[i + 3], "{replies:?}");
    }
    // Source hashing: one client address always lands on the same backend.
    let first = ask(base + 1, "x");
    for _ in 0..5 {
        assert_eq!(ask(base + 1, "x"), first);
    }
    // tcplog lines reach stdout.
    std::thread::sleep(Duration::from_millis(200));
    let output = demo.output_so_far();
    assert!(
        output.contains("demo_roundrobin demo_roundrobin/db1"),
        "{output}"
    );
    // The banner names what it serves; each of those answers.
    assert!(
        output.contains(&format!("http://127.0.0.1:{}/", base + 2)),
        "{output}"
    );
    let page = http_get(base + 2, "/");
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    let csv = http_get(base + 2, "/;csv");
    assert!(csv.contains("\ndemo_roundrobin,db1,"), "{csv}");
    let metrics = http_get(base + 2, "/metrics");
    assert!(
        metrics.contains("haproxy_server_sessions_total{proxy=\"demo_roundrobin\",server=\"db1\"}"),
        "{metrics}"
    );
    let state = switchyard_testkit::cli(base + 3, "show servers state demo_roundrobin");
    assert!(
        state.starts_with("1\n# be_id be_name srv_id srv_name"),
        "{state}"
    );
    assert_eq!(
        state.lines().filter(|l| l.contains(" db")).count(),
        3,
        "{state}"
    );
    demo.signal(libc::SIGTERM);
    let status = demo
        .wait_timeout(Duration::from_secs(10))
        .expect("demo did not stop on SIGTERM");
    assert!(status.success());
}

/// A plain HTTP/1.0 GET on 127.0.0.1, returning the whole response.
fn http_get(port: u16, path: &str) -> String {
    use std::io::Read;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn tcplog_lines_reach_a_udp_syslog_server() {
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let syslog_port = syslog.local_addr().unwrap().port();
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in backend.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"greetings\n");
        }
    });
    let front = free_port();
    let (_dir, path) = write_config(&format!(
        "global\n    log 127.0.0.1:{syslog_port} local2\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 1s\n\
         frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be\n\
         backend be\n    server s1 127.0.0.1:{backend_port}\n"
    ));
    let _proxy = ChildGuard::spawn(Command::new(BIN).arg("-f").arg(&path)).unwrap();
    wait_for_port(
        format!("127.0.0.1:{front}").parse().unwrap(),
        Duration::from_secs(10),
    )
    .unwrap();
    // Drain the readiness probe's log line, then make one session and read its line.
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = [0u8; 2048];
    syslog.set_nonblocking(true).unwrap();
    while syslog.recv(&mut buf).is_ok() {}
    syslog.set_nonblocking(false).unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", front)).unwrap();
    let local = client.local_addr().unwrap();
    let mut reply = String::new();
    BufReader::new(&mut client).read_line(&mut reply).unwrap();
    assert_eq!(reply, "greetings\n");
    drop(client);
    let n = syslog.recv(&mut buf).expect("no syslog datagram");
    let datagram = String::from_utf8_lossy(&buf[..n]).to_string();
    // local2 (18) * 8 + info (6) = 150; RFC 3164 header with the "haproxy[pid]:" tag.
    assert!(datagram.starts_with("<150>"), "{datagram}");
    assert!(datagram.contains(" haproxy["), "{datagram}");
    assert!(datagram.contains(&format!("]: {local} [")), "{datagram}");
    assert!(datagram.contains(" fe be/s1 "), "{datagram}");
    assert!(
        datagram.contains(" 10 --"),
        "bytes to client and termination state: {datagram}"
    );
}

#[test]
fn sigterm_stops_accepting_but_lets_open_sessions_finish() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in backend.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let _ = writer.write_all(format!("echo {line}").as_bytes());
                    line.clear();
                }
            });
        }
    });
    let front = free_port();
    let (_dir, path) = write_config(&format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n\
         listen l\n    bind 127.0.0.1:{front}\n    server s 127.0.0.1:{backend_port}\n"
    ));
    let mut proxy = ChildGuard::spawn(Command::new(BIN).arg("-f").arg(&path)).unwrap();
    wait_for_port(
        format!("127.0.0.1:{front}").parse().unwrap(),
        Duration::from_secs(10),
    )
    .unwrap();
    let stream = TcpStream::connect(("127.0.0.1", front)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    writer.write_all(b"one\n").unwrap();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "echo one\n");

    proxy.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // No new sessions, but the open one keeps flowing and the process waits for it.
    assert!(
        TcpStream::connect(("127.0.0.1", front)).is_err(),
        "still accepting after SIGTERM"
    );
    line.clear();
    writer.write_all(b"two\n").unwrap();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "echo two\n");
    assert!(proxy.is_running(), "exited with a session still open");
    drop(writer);
    drop(reader);
    let status = proxy
        .wait_timeout(Duration::from_secs(5))
        .expect("did not exit once drained");
    assert!(status.success());
}

#[test]
fn the_packaged_example_configuration_is_valid_without_warnings() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/switchyard.cfg");
    let out = Command::new(BIN)
        .arg("-c")
        .arg("-f")
        .arg(example)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "warnings: {stderr}");
}
