//! Reloads inside the running process (SIGHUP, SIGUSR2, `reload` on the admin socket): runtime
//! changes carry over, an invalid configuration changes nothing, no connection is refused
//! while reloading, established sessions keep flowing and `hard-stop-after` bounds them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use switchyard_testkit::{
    cli, echo_server, free_port, greeter, greeting_through, EchoLoad, Switchyard,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn base_config(admin: u16, front: u16, dynamic_front: u16, servers: &str) -> String {
    format!(
        "global\n    stats socket ipv4@127.0.0.1:{admin} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be\n\
         frontend fe_dynamic\n    bind 127.0.0.1:{dynamic_front}\n    default_backend dynamic\n\
         backend be\n    balance roundrobin\n{servers}\
         backend dynamic\n    balance roundrobin\n"
    )
}

fn start(config: &str, ports: &[u16]) -> Switchyard {
    Switchyard::start_with(BIN, config, &[], Some(ports)).unwrap()
}

/// Rewrites the configuration file and asks for a reload over the admin socket.
fn reload_with(sy: &Switchyard, admin: u16, config: &str) -> String {
    std::fs::write(sy.config_path(), config).unwrap();
    cli(admin, "reload")
}

fn server_rows(admin: u16) -> Vec<String> {
    cli(admin, "show servers state")
        .lines()
        .skip(2)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            // backend/server admin-state uweight
            format!("{}/{} {} {}", f[1], f[3], f[6], f[7])
        })
        .collect()
}

#[test]
fn runtime_changes_and_established_sessions_survive_a_reload() {
    let (admin, front, dynamic_front) = (free_port(), free_port(), free_port());
    let (s1, s2, s3, d1) = (greeter("s1"), greeter("s2"), greeter("s3"), greeter("d1"));
    let echo = echo_server();
    let two = format!(
        "    server s1 127.0.0.1:{s1}\n    server s2 127.0.0.1:{s2}\n    server e 127.0.0.1:{echo} disabled\n"
    );
    let config = base_config(admin, front, dynamic_front, &two);
    let sy = start(&config, &[front, dynamic_front, admin]);

    assert_eq!(
        cli(
            admin,
            &format!("add server dynamic/d1 127.0.0.1:{d1} weight 3")
        ),
        "New server registered.\n\n"
    );
    assert_eq!(cli(admin, "set server dynamic/d1 state ready"), "\n");
    assert_eq!(cli(admin, "set server be/s2 state maint"), "\n");
    assert_eq!(cli(admin, "set weight be/s1 9"), "\n");
    // An established session through the echo server, opened before any reload.
    assert_eq!(cli(admin, "set server be/e state ready"), "\n");
    assert_eq!(cli(admin, "set server be/s1 state maint"), "\n");
    let mut session = TcpStream::connect(("127.0.0.1", front)).unwrap();
    session
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut roundtrip = |text: &str| {
        session.write_all(text.as_bytes()).unwrap();
        let mut buf = vec![0; text.len()];
        session.read_exact(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    };
    assert_eq!(roundtrip("before"), "before");
    assert_eq!(cli(admin, "set server be/e state maint"), "\n");
    assert_eq!(cli(admin, "set server be/s1 state ready"), "\n");
    let before = server_rows(admin);

    // Reload with one more server: everything the operator did is still there.
    let three = format!("{two}    server s3 127.0.0.1:{s3}\n");
    let reloaded = base_config(admin, front, dynamic_front, &three);
    assert_eq!(reload_with(&sy, admin, &reloaded), "Success=1\n--\n\n");
    let after = server_rows(admin);
    let mut expected = before.clone();
    expected.insert(3, "be/s3 0 1".to_string());
    assert_eq!(after, expected, "before the reload: {before:?}");
    assert_eq!(greeting_through(dynamic_front), "d1");
    assert_eq!(roundtrip("after"), "after", "the old session still flows");

    // The same by signal.
    std::fs::write(sy.config_path(), &config).unwrap();
    assert!(sy.signal(switchyard_testkit::libc::SIGHUP));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server_rows(admin).iter().any(|r| r.starts_with("be/s3 ")) {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server_rows(admin), before);
    assert_eq!(roundtrip("still"), "still");
    let served: Vec<String> = (0..4).map(|_| greeting_through(front)).collect();
    assert!(served.iter().all(|s| s == "s1"), "{served:?}");
}

/// Fields of one `show stat` row (`proxy`, `name`: a server, FRONTEND or BACKEND), by column.
fn stat(admin: u16, proxy: &str, name: &str, fields: &[&str]) -> Vec<String> {
    let csv = cli(admin, "show stat");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let row: Vec<&str> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|r| r.len() > 1 && r[0] == proxy && r[1] == name)
        .unwrap_or_else(|| panic!("no {proxy}/{name} in:\n{csv}"));
    fields
        .iter()
        .map(|f| {
            let column = header.iter().position(|h| h == f).unwrap();
            row[column].to_string()
        })
        .collect()
}

#[test]
fn a_sigusr2_reload_keeps_check_states_and_counters() {
    let (admin, front, dynamic_front) = (free_port(), free_port(), free_port());
    let (echo, s3) = (echo_server(), greeter("s3"));
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // `gone` refuses connections: its first check takes it DOWN; `e` serves.
    let servers = format!(
        "    server e 127.0.0.1:{echo} check inter 100ms\n    server gone 127.0.0.1:{dead} check inter 2s\n"
    );
    let config = base_config(admin, front, dynamic_front, &servers);
    let sy = start(&config, &[front, dynamic_front, admin]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat(admin, "be", "gone", &["status"]) != ["DOWN"] {
        assert!(Instant::now() < deadline, "gone never marked DOWN");
        std::thread::sleep(Duration::from_millis(20));
    }
    for n in 0..5 {
        let mut session = TcpStream::connect(("127.0.0.1", front)).unwrap();
        session
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let text = format!("hello {n}");
        session.write_all(text.as_bytes()).unwrap();
        let mut echoed = vec![0; text.len()];
        session.read_exact(&mut echoed).unwrap();
    }
    // Sessions are counted when they end: wait until all five are (the start-up probe of the
    // test kit is one more session, without bytes).
    let counters = |proxy: &str, name: &str| stat(admin, proxy, name, &["stot", "bin", "bout"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters("be", "e")[2] != "35" {
        assert!(Instant::now() < deadline, "{:?}", counters("be", "e"));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = [
        counters("be", "e"),
        counters("fe", "FRONTEND"),
        counters("be", "BACKEND"),
    ];
    assert_eq!(before[0][1..], ["35", "35"], "echoed bytes: {before:?}");

    // SIGUSR2 (what the example unit's ExecReload sends), with one more server so the
    // reload shows.
    let more = format!("{servers}    server s3 127.0.0.1:{s3}\n");
    std::fs::write(
        sy.config_path(),
        base_config(admin, front, dynamic_front, &more),
    )
    .unwrap();
    assert!(sy.signal(switchyard_testkit::libc::SIGUSR2));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server_rows(admin).iter().any(|r| r.starts_with("be/s3 ")) {
        assert!(Instant::now() < deadline, "SIGUSR2 did not reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Right after the reload, before any new check of `gone` could run: still DOWN.
    assert_eq!(
        stat(admin, "be", "gone", &["status", "check_status", "chkdown"]),
        ["DOWN", "L4CON", "1"]
    );
    let after = [
        counters("be", "e"),
        counters("fe", "FRONTEND"),
        counters("be", "BACKEND"),
    ];
    assert_eq!(after, before, "counters of unchanged objects carry over");
    eprintln!("reload by SIGUSR2: gone still DOWN, counters carried over (server/frontend/backend stot,bin,bout): {after:?}");
    // Its checks go on from the old state: no fresh start as UP, no second DOWN transition.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(stat(admin, "be", "gone", &["status"]), ["DOWN"]);
    let output = sy.output_so_far();
    assert_eq!(
        output.matches("Server be/gone is DOWN").count(),
        1,
        "{output}"
    );
}

#[test]
fn an_invalid_configuration_is_refused_and_service_continues() {
    let (admin, front, dynamic_front) = (free_port(), free_port(), free_port());
    let s1 = greeter("s1");
    let config = base_config(
        admin,
        front,
        dynamic_front,
        &format!("    server s1 127.0.0.1:{s1}\n"),
    );
    let sy = start(&config, &[front, dynamic_front, admin]);
    let broken = config.replace("balance roundrobin", "balance sometimes");
    let answer = reload_with(&sy, admin, &broken);
    assert!(answer.starts_with("Success=0\n--\n"), "{answer}");
    assert!(
        answer.contains("switchyard.cfg:"),
        "names the file: {answer}"
    );
    assert!(answer.contains("sometimes"), "{answer}");
    assert_eq!(greeting_through(front), "s1");

    // A configuration that parses but cannot be built (a port another process holds).
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let conflicting =
        format!("{config}frontend extra\n    bind 127.0.0.1:{taken}\n    default_backend be\n");
    let answer = reload_with(&sy, admin, &conflicting);
    assert!(answer.starts_with("Success=0\n--\n"), "{answer}");
    assert!(answer.contains("cannot bind"), "{answer}");
    assert_eq!(greeting_through(front), "s1");
    assert!(sy.stderr_so_far().contains("reload refused"));
}

#[test]
fn no_connection_is_refused_or_dropped_across_many_reloads() {
    let (admin, front, dynamic_front) = (free_port(), free_port(), free_port());
    let echo = echo_server();
    let config = base_config(
        admin,
        front,
        dynamic_front,
        &format!("    server e 127.0.0.1:{echo}\n"),
    );
    let sy = start(&config, &[front, dynamic_front, admin]);
    let load = EchoLoad::start(front, 4);
    let started = Instant::now();
    let reloads = 20;
    for n in 0..reloads {
        // Alternate between two configurations so each reload really changes something.
        let text = if n % 2 == 0 {
            config.replace("timeout client 30s", "timeout client 31s")
        } else {
            config.clone()
        };
        assert_eq!(reload_with(&sy, admin, &text), "Success=1\n--\n\n");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = load.finish();
    eprintln!(
        "{reloads} reloads in {:?}: {} connections succeeded, {} failed",
        started.elapsed(),
        report.succeeded,
        report.failures.len()
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.succeeded > 0);
}

#[test]
fn hard_stop_after_closes_sessions_left_by_a_reload() {
    let (admin, front, dynamic_front) = (free_port(), free_port(), free_port());
    let echo = echo_server();
    let config = base_config(
        admin,
        front,
        dynamic_front,
        &format!("    server e 127.0.0.1:{echo}\n"),
    )
    .replace("global\n", "global\n    hard-stop-after 500ms\n");
    let sy = start(&config, &[front, dynamic_front, admin]);
    let mut session = TcpStream::connect(("127.0.0.1", front)).unwrap();
    session
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    session.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    session.read_exact(&mut buf).unwrap();
    assert_eq!(reload_with(&sy, admin, &config), "Success=1\n--\n\n");
    let waited = Instant::now();
    // The old engine's session is closed once hard-stop-after expires.
    let mut rest = Vec::new();
    let read = session.read_to_end(&mut rest);
    assert!(
        read.is_ok() || waited.elapsed() < Duration::from_secs(9),
        "{read:?}"
    );
    assert!(
        waited.elapsed() >= Duration::from_millis(400),
        "closed too early: {:?}",
        waited.elapsed()
    );
    assert!(
        waited.elapsed() < Duration::from_secs(9),
        "not closed by hard-stop-after"
    );
    // New sessions are served by the new engine.
    let mut fresh = TcpStream::connect(("127.0.0.1", front)).unwrap();
    fresh.write_all(b"pong").unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    fresh.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}
