//! The Runtime API through the real binary, driven the way operators' scripts drive HAProxy:
//! one command per connection over TCP, a raw Python socket client, and levels.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use switchyard_testkit::{
    cli, free_port, greeter, greeting_through as through, http_get, http_port_server, Switchyard,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn start(admin: u16, user: u16, front: u16) -> Switchyard {
    let config = format!(
        "global\n    stats socket ipv4@127.0.0.1:{admin} level admin\n    stats socket ipv4@127.0.0.1:{user} level user\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be_dynamic\n\
         backend be_dynamic\n    balance roundrobin\n"
    );
    Switchyard::start(BIN, &config).unwrap()
}

const STATE_HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";

#[test]
fn classic_flow_from_an_empty_backend_over_the_socket() {
    let (admin, user, front) = (free_port(), free_port(), free_port());
    let s1 = greeter("s1");
    let _proxy = start(admin, user, front);

    assert_eq!(
        cli(admin, "show servers state"),
        format!("{STATE_HEADER}\n")
    );
    assert_eq!(
        cli(
            admin,
            &format!("add server be_dynamic/s1 127.0.0.1:{s1} weight 10")
        ),
        "New server registered.\n\n"
    );
    // New servers start in maintenance: admin state 1 (FMAINT), stopped.
    let state = cli(admin, "show servers state be_dynamic");
    let row: Vec<&str> = state.lines().nth(2).unwrap().split(' ').collect();
    assert_eq!(
        &row[..9],
        [
            "3",
            "be_dynamic",
            "1",
            "s1",
            "127.0.0.1",
            "0",
            "1",
            "10",
            "10"
        ],
        "{state}"
    );
    assert_eq!(through(front), "");

    assert_eq!(cli(admin, "set server be_dynamic/s1 state ready"), "\n");
    assert_eq!(through(front), "s1");
    assert_eq!(
        cli(admin, "get weight be_dynamic/s1"),
        "10 (initial 10)\n\n"
    );

    assert_eq!(
        cli(admin, "del server be_dynamic/s1"),
        "Only servers in maintenance mode can be deleted.\n"
    );
    assert_eq!(cli(admin, "set server be_dynamic/s1 state maint"), "\n");
    assert_eq!(through(front), "");
    assert_eq!(cli(admin, "del server be_dynamic/s1"), "Server deleted.\n");
    assert_eq!(
        cli(admin, "show servers state"),
        format!("{STATE_HEADER}\n")
    );
    assert_eq!(
        cli(admin, "get weight be_dynamic/s1"),
        "No such server.\n\n"
    );
    assert_eq!(
        cli(admin, "set server nope/s1 state ready"),
        "No such backend.\n\n"
    );
}

#[test]
fn levels_are_enforced_and_commands_chain_with_semicolons() {
    let (admin, user, front) = (free_port(), free_port(), free_port());
    let s1 = greeter("s1");
    let _proxy = start(admin, user, front);
    assert_eq!(
        cli(user, &format!("add server be_dynamic/s1 127.0.0.1:{s1}")),
        "Permission denied\n\n"
    );
    assert_eq!(cli(user, "clear counters"), "Permission denied\n\n");
    assert!(cli(user, "show stat").starts_with("# pxname,svname,"));
    let chained = cli(
        admin,
        &format!("add server be_dynamic/s1 127.0.0.1:{s1}; set server be_dynamic/s1 state ready; get weight be_dynamic/s1"),
    );
    assert_eq!(chained, "New server registered.\n\n\n1 (initial 1)\n\n");
    assert_eq!(through(front), "s1");
}

#[test]
fn a_python_raw_socket_client_gets_haproxy_formats() {
    let (admin, user, front) = (free_port(), free_port(), free_port());
    let _proxy = start(admin, user, front);
    // What operators' Python scripts do: connect, send one line, read until close. (An empty
    // backend shows UP, as in HAProxy 2.6.)
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {admin}))\n\
         s.sendall(b'show stat\\n')\n\
         data = b''\n\
         while True:\n    chunk = s.recv(4096)\n    if not chunk: break\n    data += chunk\n\
         rows = [l.split(',') for l in data.decode().splitlines() if l and not l.startswith('#')]\n\
         print(' '.join(r[0] + '/' + r[1] + '=' + r[17] for r in rows))\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "fe/FRONTEND=OPEN be_dynamic/BACKEND=UP"
    );
}

#[test]
fn set_maxconn_frontend_and_global_change_limits_live() {
    use switchyard_testkit::echo_server;
    let (admin, user, front) = (free_port(), free_port(), free_port());
    let echo = echo_server();
    let _proxy = start(admin, user, front);
    assert_eq!(
        cli(admin, &format!("add server be_dynamic/e 127.0.0.1:{echo}")),
        "New server registered.\n\n"
    );
    assert_eq!(cli(admin, "set server be_dynamic/e state ready"), "\n");
    assert_eq!(cli(admin, "set maxconn frontend fe 1"), "\n");
    let slim = |port| {
        cli(port, "show stat")
            .lines()
            .find(|l| l.starts_with("fe,FRONTEND,"))
            .map(|l| l.split(',').nth(6).unwrap_or_default().to_string())
    };
    assert_eq!(slim(admin).as_deref(), Some("1"));

    let open = |text: &[u8]| {
        let mut stream = TcpStream::connect(("127.0.0.1", front)).unwrap();
        stream.write_all(text).unwrap();
        stream
    };
    let mut first = open(b"one");
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0; 3];
    first.read_exact(&mut buf).unwrap();
    // The second connection waits in the kernel's queue: the frontend is full.
    let mut second = open(b"two");
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        second.read_exact(&mut buf).is_err(),
        "accepted above maxconn"
    );
    // Raising the limit lets it in at once.
    assert_eq!(cli(admin, "set maxconn frontend fe 2"), "\n");
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two");

    assert_eq!(
        cli(admin, "set maxconn frontend fe -1"),
        "Value out of range.\n\n"
    );
    assert_eq!(
        cli(admin, "set maxconn frontend nofe 10"),
        "No such frontend.\n\n"
    );
    assert_eq!(slim(admin).as_deref(), Some("2"));
    let maxconn = |port| {
        cli(port, "show info")
            .lines()
            .find_map(|l| l.strip_prefix("Maxconn: ").map(str::to_string))
    };
    let hard = maxconn(admin).unwrap();
    assert_eq!(
        cli(admin, "set maxconn global 99999999"),
        "Value out of range.\n\n"
    );
    assert_eq!(cli(admin, "set maxconn global 10"), "\n");
    assert_eq!(maxconn(admin).as_deref(), Some("10"));
    assert_eq!(cli(admin, "set maxconn global 0"), "\n");
    assert_eq!(maxconn(admin), Some(hard));
}

/// Replies observed on HAProxy 2.6 for the same commands (`set server ... agent|check-port`),
/// and the effect: checks move to the new port.
#[test]
fn set_server_check_port_and_agent_answer_like_haproxy_and_take_effect() {
    let (admin, front) = (free_port(), free_port());
    let live = greeter("live");
    let dead = free_port();
    let config = format!(
        "global\n    stats socket ipv4@127.0.0.1:{admin} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
         frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be\n\
         backend be\n\
         \x20   server s1 127.0.0.1:{live} check port {dead} inter 100ms fall 1 rise 1\n\
         \x20   server s2 127.0.0.1:{live}\n"
    );
    let _proxy = Switchyard::start_with(BIN, &config, &[], Some(&[front, admin])).unwrap();
    let op_state = || {
        cli(admin, "show servers state be")
            .lines()
            .nth(2)
            .map(|l| l.split(' ').nth(5).unwrap_or_default().to_string())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while op_state().as_deref() != Some("0") {
        assert!(std::time::Instant::now() < deadline, "s1 never went DOWN");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        cli(admin, &format!("set server be/s1 check-port {live}")),
        "\n"
    );
    while op_state().as_deref() != Some("2") {
        assert!(
            std::time::Instant::now() < deadline,
            "s1 did not come UP on the new check port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        cli(admin, "set server be/s2 check-port 80"),
        "health checks are not enabled on this server\n"
    );
    assert_eq!(
        cli(admin, "set server be/s1 check-port 99999"),
        "provided port is invalid\n"
    );
    assert_eq!(
        cli(admin, "set server be/s1 check-port abc"),
        "provided port is not an integer\n"
    );
    assert_eq!(
        cli(admin, "set server be/s1 agent up"),
        "agent checks are not enabled on this server.\n\n"
    );
    assert_eq!(
        cli(admin, "set server be/s1 agent foo"),
        "'set server <srv> agent' expects 'up' or 'down'.\n\n"
    );
}

/// `show sess` and `shutdown session ID` through the binary's stats socket: a proxied session
/// is listed with HAProxy's leading fields, shut down by its ID (the client sees the close),
/// and no longer listed.
#[test]
fn show_sess_lists_a_session_and_shutdown_session_closes_it() {
    use switchyard_testkit::echo_server;
    let (admin, front) = (free_port(), free_port());
    let echo = echo_server();
    let config = format!(
        "global\n    stats socket ipv4@127.0.0.1:{admin} level admin\n    log stdout format raw local0 info\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         listen li\n    bind 127.0.0.1:{front}\n    server s1 127.0.0.1:{echo}\n"
    );
    let proxy = Switchyard::start_with(BIN, &config, &[], Some(&[front, admin])).unwrap();

    // Sessions end asynchronously: waits until none is listed (an empty answer: the CLI's
    // own connection is not a session here).
    let no_session_left = |what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let list = cli(admin, "show sess");
            if list == "\n" {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {list:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The probe that waited for the frontend to listen was a session too.
    no_session_left("the readiness probe's session is still listed");

    // A session that has reached its server (the echo came back).
    let mut client = TcpStream::connect(("127.0.0.1", front)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(b"hello\n").unwrap();
    let mut echo_back = [0u8; 6];
    client.read_exact(&mut echo_back).unwrap();
    assert_eq!(&echo_back, b"hello\n");
    let src = client.local_addr().unwrap();

    // One line per session, then the empty line ending every answer. The fields are
    // HAProxy 2.6's first ones, same names and order (HAProxy goes on with `epoch=`,
    // `calls=`, buffer and stream-connector internals: see docs/runtime-api.md).
    let list = cli(admin, "show sess");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list:?}");
    assert_eq!(lines[1], "", "{list:?}");
    let (id, rest) = lines[0].split_once(": ").expect("0xID: fields");
    assert!(
        id.starts_with("0x") && u64::from_str_radix(&id[2..], 16).is_ok(),
        "{id:?}"
    );
    let age = rest
        .strip_prefix(&format!(
            "proto=tcpv4 src={src} fe=li be=li srv=s1 ts=00 age="
        ))
        .and_then(|a| a.strip_suffix('s'))
        .unwrap_or_else(|| panic!("unexpected line: {rest:?}"));
    assert!(age.parse::<u64>().is_ok_and(|a| a < 30), "age {age:?}");
    // `show sess ID` shows that session alone.
    assert_eq!(cli(admin, &format!("show sess {id}")), list);

    // Shut down by its ID: HAProxy's empty answer, and the client sees the connection end.
    assert_eq!(cli(admin, &format!("shutdown session {id}")), "\n");
    assert_closed_after_shutdown(&mut client);
    no_session_left("still listed after shutdown session");
    // Its log line: killed (`K`) while forwarding (`D`), with the 6 bytes echoed until then.
    let logged = || {
        let output = proxy.stdout_so_far();
        let line = output.lines().find(|l| l.starts_with(&format!("{src} ")));
        line.map(str::to_string).ok_or(output)
    };
    let line = switchyard_testkit::poll_until(Duration::from_secs(5), logged, Result::is_ok)
        .unwrap_or_else(|output| panic!("no log line for {src}: {output}"));
    assert!(
        line.contains(" li li/s1 ") && line.contains(" 6 KD "),
        "{line}"
    );
    assert_eq!(
        cli(admin, &format!("shutdown session {id}")),
        "No such session (use 'show sess').\n\n"
    );
    assert_eq!(
        cli(admin, &format!("show sess {id}")),
        "Session not found.\n\n"
    );
}

/// A `mode http` connection waiting for its next request is a session too: listed by
/// `show sess`, and `shutdown session ID` closes it (the kill order is polled apart from the
/// connection's own wake-ups, so this checks that it still gets through while idle).
#[test]
fn shutdown_session_closes_an_idle_keep_alive_http_connection() {
    let (admin, front) = (free_port(), free_port());
    let server_port = http_port_server();
    let config = format!(
        "global\n    stats socket ipv4@127.0.0.1:{admin} level admin\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         listen web\n    bind 127.0.0.1:{front}\n    server s1 127.0.0.1:{server_port}\n"
    );
    let _proxy = Switchyard::start_with(BIN, &config, &[], Some(&[front, admin])).unwrap();

    let mut client = TcpStream::connect(("127.0.0.1", front)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The body: the port of the server connection that carried the request.
    let carried = http_get(&mut client);
    assert!(carried.parse::<u16>().is_ok(), "{carried:?}");
    let src = client.local_addr().unwrap();

    // Idle between requests now: its session is listed, found by the client's address.
    let list = cli(admin, "show sess");
    let line = list
        .lines()
        .find(|line| line.contains(&format!(" src={src} ")))
        .unwrap_or_else(|| panic!("the idle client is not listed: {list:?}"));
    let (id, rest) = line.split_once(": ").expect("0xID: fields");
    assert!(
        rest.starts_with(&format!("proto=tcpv4 src={src} fe=web be=web ")),
        "{rest:?}"
    );

    assert_eq!(cli(admin, &format!("shutdown session {id}")), "\n");
    assert_closed_after_shutdown(&mut client);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cli(admin, &format!("show sess {id}")) != "Session not found.\n\n" {
        assert!(std::time::Instant::now() < deadline, "still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The client sees its connection end (read timeout set), with nothing more to read.
fn assert_closed_after_shutdown(client: &mut TcpStream) {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "data after the shutdown: {rest:?}"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the client was not closed: {e}"
        ),
    }
}
