//! `switchyard ctl` against the real binary: tables, JSON, runtime changes, error replies
//! (exit 1) and unreachable sockets (exit 2), over TCP and unix stats sockets.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_testkit::{
    cli, echo_server, free_port, run_with_timeout, wait_for_port, Switchyard, TempDir,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `switchyard ctl ARGS...` with `SWITCHYARD_SOCKET` set to `env` (or unset).
fn ctl_env(env: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.arg("ctl").args(args).env_remove("SWITCHYARD_SOCKET");
    if let Some(socket) = env {
        cmd.env("SWITCHYARD_SOCKET", socket);
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30)).expect("running switchyard ctl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ctl(args: &[&str]) -> Out {
    ctl_env(None, args)
}

/// `ctl` that must succeed.
fn ok(args: &[&str]) -> String {
    let out = ctl(args);
    assert_eq!(
        out.code, 0,
        "ctl {args:?}: stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out.stdout
}

fn json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ctl {args:?}: bad JSON ({e}):\n{text}"))
}

/// The object of an array whose `key` is `value`.
fn find<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .and_then(|rows| rows.iter().find(|r| r[key] == value))
        .unwrap_or_else(|| panic!("no {key}={value} in {rows:#}"))
}

/// The words of the table line whose first two words are `a b`.
fn table_row(table: &str, a: &str, b: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|w| w.len() >= 2 && w[0] == a && w[1] == b)
        .unwrap_or_else(|| panic!("no row '{a} {b}' in:\n{table}"))
}

/// A switchyard with a user-level TCP socket (listed first, so `-f` must skip it), an
/// admin TCP socket, an admin unix socket, and backend `be` with one server that answers
/// (`s1`) and one that does not (`s2`).
struct Fixture {
    proxy: Switchyard,
    admin: u16,
    user: u16,
    unix: PathBuf,
    s1: u16,
    _dir: TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = TempDir::new("switchyard-ctl").unwrap();
        let unix = dir.path().join("admin.sock");
        let (admin, user, front, s1, s2) = (
            free_port(),
            free_port(),
            free_port(),
            echo_server(),
            free_port(),
        );
        let config = format!(
            "global\n    stats socket ipv4@127.0.0.1:{user} level user\n    stats socket ipv4@127.0.0.1:{admin} level admin\n    stats socket {} level admin\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
             frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be\n\
             backend be\n    balance roundrobin\n    server s1 127.0.0.1:{s1} check inter 100ms\n    server s2 127.0.0.1:{s2} check inter 100ms\n",
            unix.display()
        );
        let proxy = Switchyard::start(BIN, &config).unwrap();
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], admin)),
            Duration::from_secs(10),
        )
        .unwrap();
        let fixture = Fixture {
            proxy,
            admin,
            user,
            unix,
            s1,
            _dir: dir,
        };
        // Checks settle: s1 UP with L4OK (status 6), s2 DOWN (op state 0).
        fixture.wait_for_state(|rows| {
            rows.iter()
                .any(|r| r[3] == "s1" && r[5] == "2" && r[10] == "6")
                && rows.iter().any(|r| r[3] == "s2" && r[5] == "0")
        });
        fixture
    }

    fn tcp(&self) -> String {
        format!("ipv4@127.0.0.1:{}", self.admin)
    }

    /// Polls `show servers state be` (raw rows, split on spaces) until `done` holds.
    fn wait_for_state(&self, done: impl Fn(&[Vec<String>]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let reply = cli(self.admin, "show servers state be");
            let rows: Vec<Vec<String>> = reply
                .lines()
                .skip(2)
                .filter(|l| !l.is_empty())
                .map(|l| l.split(' ').map(str::to_string).collect())
                .collect();
            if done(&rows) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "servers did not reach the expected state:\n{reply}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn tables_and_json_over_tcp_unix_env_and_config() {
    let fx = Fixture::start();
    let tcp = fx.tcp();
    let s1_addr = format!("127.0.0.1:{}", fx.s1);

    // `show stat`: a table with one block per proxy.
    let table = ok(&["--socket", &tcp, "show", "stat"]);
    assert!(table.starts_with("PROXY "), "{table}");
    let s1 = table_row(&table, "be", "s1");
    assert_eq!(s1[2], "UP", "{table}");
    assert!(s1.contains(&"L4OK".to_string()), "{table}");
    assert_eq!(s1.last(), Some(&s1_addr), "{table}");
    let s2 = table_row(&table, "be", "s2");
    assert_eq!(s2[2], "DOWN", "{table}");
    assert!(s2.contains(&"L4CON".to_string()), "{table}");
    table_row(&table, "be", "BACKEND");
    table_row(&table, "fe", "FRONTEND");
    assert!(
        table.contains("\n\nbe "),
        "proxies are separated by a blank line:\n{table}"
    );

    // `show stat --json`: every field, numbers as numbers.
    let stat = json(&["--socket", &tcp, "--json", "show", "stat"]);
    let s1 = find(&stat, "svname", "s1");
    assert_eq!(s1["pxname"], "be");
    assert_eq!(s1["status"], "UP");
    assert_eq!(s1["check_status"], "L4OK");
    assert_eq!(s1["addr"], s1_addr.as_str());
    assert_eq!(s1["weight"], 1);
    assert!(s1["stot"].is_u64(), "{s1:#}");
    assert_eq!(find(&stat, "svname", "s2")["status"], "DOWN");
    assert!(find(&stat, "svname", "FRONTEND")["slim"].is_u64());

    // `show servers state` over the unix socket, codes decoded.
    let unix = fx.unix.to_str().unwrap();
    let table = ok(&["--socket", unix, "show", "servers", "state"]);
    assert!(table.starts_with("BACKEND "), "{table}");
    assert_eq!(
        table_row(&table, "be", "s1")[2..7],
        [s1_addr.as_str(), "UP", "ready", "1/1", "L4OK"],
        "{table}"
    );
    assert_eq!(table_row(&table, "be", "s2")[3], "DOWN", "{table}");

    // `show info` as aligned `Name value` lines and as an object.
    let table = ok(&["--socket", unix, "show", "info"]);
    assert_eq!(table_row(&table, "Name", "Switchyard").len(), 2, "{table}");
    let info = json(&["--socket", unix, "--json", "show", "info"]);
    assert_eq!(info["Name"], "Switchyard");
    assert_eq!(info["Pid"], fx.proxy.pid());

    // `--raw`: the bytes as received, CLI terminator included.
    assert_eq!(
        ok(&["--socket", &tcp, "--raw", "show", "backend"]),
        cli(fx.admin, "show backend")
    );
    // Other replies are printed as text (without the CLI's blank line).
    assert_eq!(
        ok(&["--socket", &tcp, "get", "weight", "be/s1"]),
        "1 (initial 1)\n"
    );
    assert_eq!(
        json(&["--socket", &tcp, "--json", "get", "weight", "be/s1"]),
        serde_json::json!({ "reply": "1 (initial 1)" })
    );

    // The socket from the environment, in both spellings.
    for env in [format!("unix@{unix}"), format!("127.0.0.1:{}", fx.admin)] {
        let out = ctl_env(Some(&env), &["show", "backend"]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "# name\nbe\n"),
            "{env}: {}",
            out.stderr
        );
    }

    // `-f CONFIG`: the admin socket, although a user-level one comes first (the user level
    // may not run `show sess`).
    let config = fx.proxy.config_path().to_str().unwrap().to_string();
    ok(&["-f", &config, "show", "sess"]);
    let state = json(&["-f", &config, "--json", "show", "servers", "state", "be"]);
    assert_eq!(find(&state, "srv_name", "s1")["srv_op_state"], 2);

    // The user-level socket refuses: an error reply, exit 1, message on stderr.
    let user = format!("127.0.0.1:{}", fx.user);
    let out = ctl(&["--socket", &user, "show", "sess"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "Permission denied\n");
}

#[test]
fn runtime_changes_and_error_replies() {
    let fx = Fixture::start();
    let tcp = fx.tcp();
    let x_port = echo_server();
    let x_addr = format!("127.0.0.1:{x_port}");

    assert_eq!(
        ok(&["--socket", &tcp, "add", "server", "be/x", &x_addr]),
        "New server registered.\n"
    );
    // New servers start in forced maintenance.
    let table = ok(&["--socket", &tcp, "show", "servers", "state", "be"]);
    assert_eq!(
        table_row(&table, "be", "x")[2..6],
        [x_addr.as_str(), "DOWN", "maint", "(FMAINT)"],
        "{table}"
    );
    let state = json(&["--socket", &tcp, "--json", "show", "servers", "state", "be"]);
    assert_eq!(find(&state, "srv_name", "x")["srv_admin_state"], 1);

    // Success without output: nothing printed, exit 0.
    assert_eq!(
        ok(&["--socket", &tcp, "set", "server", "be/x", "state", "ready"]),
        ""
    );
    fx.wait_for_state(|rows| rows.iter().any(|r| r[3] == "x" && r[5] == "2"));
    let state = json(&["--socket", &tcp, "--json", "show", "servers", "state", "be"]);
    let x = find(&state, "srv_name", "x");
    assert_eq!(x["be_name"], "be");
    assert_eq!(x["srv_addr"], "127.0.0.1");
    assert_eq!(x["srv_port"], x_port);
    assert_eq!(x["srv_admin_state"], 0);
    assert_eq!(x["srv_op_state"], 2);
    assert_eq!(x["srv_uweight"], 1);
    assert_eq!(x["srv_fqdn"], Value::Null);
    let table = ok(&["--socket", &tcp, "show", "servers", "state", "be"]);
    assert_eq!(
        table_row(&table, "be", "x")[3..5],
        ["UP", "ready"],
        "{table}"
    );

    // Drain shows up decoded.
    ok(&["--socket", &tcp, "set", "server", "be/x", "state", "drain"]);
    let table = ok(&["--socket", &tcp, "show", "servers", "state", "be"]);
    assert_eq!(
        table_row(&table, "be", "x")[4..6],
        ["drain", "(FDRAIN)"],
        "{table}"
    );

    // Error replies: exit 1, the message on stderr (or as {"error": ...} with --json).
    let out = ctl(&[
        "--socket", &tcp, "set", "server", "be/nope", "state", "ready",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (1, "", "No such server.\n")
    );
    let out = ctl(&[
        "--socket", &tcp, "--json", "set", "server", "be/nope", "state", "ready",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        serde_json::json!({ "error": "No such server." })
    );
    let out = ctl(&["--socket", &tcp, "shw", "info"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("Unknown command"), "{}", out.stderr);
    let out = ctl(&["--socket", &tcp, "add", "server", "be/x", &x_addr]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("Already exists a server"),
        "{}",
        out.stderr
    );
    // `--raw` keeps the exit status.
    let out = ctl(&["--socket", &tcp, "--raw", "get", "weight", "be/nope"]);
    assert_eq!((out.code, out.stdout.as_str()), (1, "No such server.\n\n"));
    // A chain: both replies on stdout, exit 1 because one of them failed.
    let out = ctl(&["--socket", &tcp, "get weight be/s1; get weight be/nope"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, "1 (initial 1)\n\nNo such server.\n");
}

#[test]
fn unreachable_or_missing_socket_exits_2() {
    // Nothing listens on this port.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = ctl(&["--socket", &addr, "show", "info"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!("cannot connect to {addr}"))
            && out.stderr.contains("Connection refused"),
        "{}",
        out.stderr
    );

    let dir = TempDir::new("switchyard-ctl-missing").unwrap();
    let path = dir.path().join("absent.sock");
    let out = ctl(&["--socket", path.to_str().unwrap(), "show", "info"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(&path.display().to_string())
            && out.stderr.contains("No such file or directory"),
        "{}",
        out.stderr
    );

    let out = ctl(&["show", "info"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("SWITCHYARD_SOCKET"), "{}", out.stderr);

    let config = dir.path().join("nosocket.cfg");
    std::fs::write(&config, "global\n    maxconn 100\n").unwrap();
    let out = ctl(&["-f", config.to_str().unwrap(), "show", "info"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no 'stats socket'"), "{}", out.stderr);

    // A socket that accepts but never answers: the read times out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            // Hold the connection open until the client gives up.
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
        }
    });
    let started = Instant::now();
    let out = ctl(&[
        "--socket",
        &silent.to_string(),
        "--timeout",
        "0.5",
        "show",
        "info",
    ]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stderr.contains("no complete reply"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    holder.join().unwrap();
}
