//! PROXY protocol against a real peer: Switchyard's `send-proxy`/`send-proxy-v2` received by
//! HAProxy's `accept-proxy`, HAProxy's `send-proxy`/`send-proxy-v2` received by Switchyard's
//! `accept-proxy`; the original client address shows in the receiver's log. A connection
//! whose header is not valid is closed without reaching a server. Without `haproxy` the
//! tests print why and pass, except in CI (`CI` set), where they fail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_testkit::{
    echo_server, free_port, greeter, require_command, ChildGuard, Switchyard, TempDir,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

const LOGGING: &str = "global\n    log stdout format raw local0 info\n\
    defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 1s\n    \
    timeout client 5s\n    timeout server 5s\n";

fn haproxy(dir: &Path, config: &str) -> ChildGuard {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    ChildGuard::spawn(Command::new("haproxy").arg("-db").arg("-f").arg(&path)).unwrap()
}

/// Connects to `port`, sends a line and reads it back (the chain ends at an echo server);
/// returns the client's own port, which the receiver must log.
fn echo_through(port: u16) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let local = stream.local_addr().unwrap().port();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"hello through the chain\n").unwrap();
    let mut echoed = [0u8; 24];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"hello through the chain\n");
    local
}

fn wait_for_log(output: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = output();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no '{needle}' in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn haproxy_accepts_what_switchyard_sends_in_both_versions() {
    if !require_command("haproxy", "haproxy") {
        return;
    }
    let dir = TempDir::new("switchyard-pp").unwrap();
    let echo = echo_server();
    for version in ["send-proxy", "send-proxy-v2"] {
        let (receiver, front) = (free_port(), free_port());
        let hap = haproxy(
            dir.path(),
            &format!(
                "{LOGGING}frontend received\n    bind 127.0.0.1:{receiver} accept-proxy\n    \
                 default_backend echo\nbackend echo\n    server e 127.0.0.1:{echo}\n"
            ),
        );
        switchyard_testkit::wait_for_port(
            format!("127.0.0.1:{receiver}").parse().unwrap(),
            Duration::from_secs(10),
        )
        .unwrap();
        let _sy = Switchyard::start(
            BIN,
            &format!(
                "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
                 listen sender\n    bind 127.0.0.1:{front}\n    server haproxy 127.0.0.1:{receiver} {version}\n"
            ),
        )
        .unwrap();
        let client_port = echo_through(front);
        // HAProxy's tcplog starts with the client address it was told about.
        let log = wait_for_log(
            || hap.stdout_so_far(),
            &format!("127.0.0.1:{client_port} ["),
        );
        assert!(log.contains("received echo/e"), "{version}: {log}");
    }
}

#[test]
fn switchyard_accepts_what_haproxy_sends_and_rejects_garbage() {
    if !require_command("haproxy", "haproxy") {
        return;
    }
    let dir = TempDir::new("switchyard-pp").unwrap();
    let echo = echo_server();
    let (receiver, front_v1, front_v2) = (free_port(), free_port(), free_port());
    let sy = Switchyard::start(
        BIN,
        &format!(
            "{LOGGING}listen received\n    bind 127.0.0.1:{receiver} accept-proxy\n    \
             server e 127.0.0.1:{echo}\n"
        ),
    )
    .unwrap();
    let _hap = haproxy(
        dir.path(),
        &format!(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             listen v1\n    bind 127.0.0.1:{front_v1}\n    server sy 127.0.0.1:{receiver} send-proxy\n\
             listen v2\n    bind 127.0.0.1:{front_v2}\n    server sy 127.0.0.1:{receiver} send-proxy-v2\n"
        ),
    );
    for front in [front_v1, front_v2] {
        switchyard_testkit::wait_for_port(
            format!("127.0.0.1:{front}").parse().unwrap(),
            Duration::from_secs(10),
        )
        .unwrap();
        let client_port = echo_through(front);
        let log = wait_for_log(|| sy.stdout_so_far(), &format!("127.0.0.1:{client_port} ["));
        assert!(log.contains("received received/e"), "{log}");
    }

    // Not a PROXY header: closed, and the server never hears from that client.
    let greeter_port = greeter("server");
    let (strict, sent) = (free_port(), free_port());
    let _sy2 = Switchyard::start(
        BIN,
        &format!(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             listen strict\n    bind 127.0.0.1:{strict} accept-proxy\n    server g 127.0.0.1:{greeter_port}\n\
             listen chained\n    bind 127.0.0.1:{sent}\n    server s 127.0.0.1:{strict} send-proxy-v2\n"
        ),
    )
    .unwrap();
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4\n",
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", strict)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(garbage).unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        assert!(
            reply.is_empty(),
            "{:?} reached the server: {:?}",
            String::from_utf8_lossy(garbage),
            String::from_utf8_lossy(&reply)
        );
    }
    // Switchyard to Switchyard (v2): the greeting comes back through both hops.
    let mut stream = TcpStream::connect(("127.0.0.1", sent)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "server\n");
}
