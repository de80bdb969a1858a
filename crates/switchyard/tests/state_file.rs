//! Runtime changes survive a crash and a restart through `runtime-state-file`: dynamic
//! servers, admin states, weights, limits, deletions and servers checks saw DOWN; an edited
//! configuration line wins over older runtime changes; an unreadable file is moved aside.

use std::time::{Duration, Instant};

use switchyard_testkit::{cli, free_port, greeter, greeting_through, Switchyard, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

struct Ports {
    admin: u16,
    front: u16,
    dynamic_front: u16,
    s1: u16,
    s2: u16,
    s3: u16,
    /// Nothing listens here in the first run, so checks mark s4 DOWN.
    s4: u16,
}

fn config(p: &Ports, state: &std::path::Path, s2_weight: u32) -> String {
    format!(
        "global\n    stats socket ipv4@127.0.0.1:{admin} level admin\n    runtime-state-file {state}\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be\n\
         frontend fe_dynamic\n    bind 127.0.0.1:{dynamic_front}\n    default_backend dynamic\n\
         backend be\n    balance roundrobin\n\
         \x20   server s1 127.0.0.1:{s1}\n\
         \x20   server s2 127.0.0.1:{s2} weight {s2_weight}\n\
         \x20   server s3 127.0.0.1:{s3}\n\
         \x20   server s4 127.0.0.1:{s4} check inter 1s rise 3 fall 1\n\
         backend dynamic\n    balance roundrobin\n",
        admin = p.admin,
        front = p.front,
        dynamic_front = p.dynamic_front,
        s1 = p.s1,
        s2 = p.s2,
        s3 = p.s3,
        s4 = p.s4,
        state = state.display(),
    )
}

fn start(config: &str, p: &Ports) -> Switchyard {
    Switchyard::start_with(BIN, config, &[], Some(&[p.front, p.dynamic_front, p.admin])).unwrap()
}

/// `show servers state` rows as fields, without the time since the last change and the
/// last check's details (a restarted process has not checked yet).
fn servers_state(admin: u16) -> Vec<Vec<String>> {
    cli(admin, "show servers state")
        .lines()
        .skip(2)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut fields: Vec<String> = line.split(' ').map(str::to_string).collect();
            for masked in &mut fields[9..=13] {
                *masked = "-".into();
            }
            fields
        })
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], backend: &str, server: &str) -> Option<&'a Vec<String>> {
    rows.iter().find(|r| r[1] == backend && r[3] == server)
}

/// srv_op_state: 0 = stopped (DOWN), 2 = running.
fn op_state(admin: u16, backend: &str, server: &str) -> Option<String> {
    row(&servers_state(admin), backend, server).map(|r| r[5].clone())
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn runtime_changes_survive_a_crash_and_restart_until_the_configuration_changes() {
    let dir = TempDir::new("switchyard-state").unwrap();
    let state = dir.path().join("runtime-state.json");
    let p = Ports {
        admin: free_port(),
        front: free_port(),
        dynamic_front: free_port(),
        s1: greeter("s1"),
        s2: greeter("s2"),
        s3: greeter("s3"),
        s4: free_port(),
    };
    let d1 = greeter("d1");
    let original = config(&p, &state, 1);

    // First life: the operator's changes.
    let mut first = start(&original, &p);
    wait_until("checks to mark s4 DOWN", Duration::from_secs(15), || {
        op_state(p.admin, "be", "s4").as_deref() == Some("0")
    });
    let admin = p.admin;
    let ok = |command: &str, reply: &str| assert_eq!(cli(admin, command), reply, "{command}");
    ok(
        &format!("add server dynamic/d1 127.0.0.1:{d1} weight 7"),
        "New server registered.\n\n",
    );
    ok("set server dynamic/d1 state ready", "\n");
    ok("set server be/s2 state maint", "\n");
    ok("set weight be/s1 5", "\n");
    ok("set maxconn server be/s1 20", "\n");
    ok("set server be/s3 state maint", "\n");
    ok("del server be/s3", "Server deleted.\n");
    let before = servers_state(admin);
    let weight_before = cli(admin, "get weight be/s1");
    assert_eq!(greeting_through(p.dynamic_front), "d1");
    // A crash right after the replies: nothing may be lost.
    first.signal(libc_sigkill());
    first.wait_timeout(Duration::from_secs(5)).unwrap();
    drop(first);

    // Second life, same configuration; s4 now answers but must start DOWN, as checks last
    // saw it, until `rise 3` checks pass.
    let _s4 = std::net::TcpListener::bind(("127.0.0.1", p.s4)).unwrap();
    let mut second = start(&original, &p);
    assert_eq!(servers_state(admin), before);
    assert_eq!(cli(admin, "get weight be/s1"), weight_before);
    assert_eq!(op_state(admin, "be", "s4").as_deref(), Some("0"));
    assert_eq!(greeting_through(p.dynamic_front), "d1");
    for _ in 0..6 {
        // s2 in maintenance, s3 deleted, s4 DOWN: only s1 serves.
        assert_eq!(greeting_through(p.front), "s1");
    }
    assert!(
        !second.stderr_so_far().contains("runtime-state"),
        "unexpected notices: {}",
        second.stderr_so_far()
    );
    wait_until(
        "checks to bring s4 back UP",
        Duration::from_secs(15),
        || op_state(p.admin, "be", "s4").as_deref() == Some("2"),
    );
    assert!(second.stop(Duration::from_secs(10)).is_some());
    drop(second);

    // Third life: the operator edited s2's line since putting it in maintenance: the
    // configuration is the newer intent and wins; every other change stays.
    let edited = config(&p, &state, 3);
    let third = start(&edited, &p);
    let rows = servers_state(admin);
    let s2 = row(&rows, "be", "s2").expect("s2 present");
    assert_eq!((s2[6].as_str(), s2[7].as_str()), ("0", "3"), "{s2:?}");
    assert!(row(&rows, "be", "s3").is_none(), "s3 stays deleted");
    assert!(row(&rows, "dynamic", "d1").is_some(), "d1 re-created");
    assert_eq!(cli(admin, "get weight be/s1"), weight_before);
    let stderr = third.stderr_so_far();
    assert!(
        stderr.contains("'be/s2' changed in the configuration") && stderr.contains("wins"),
        "{stderr}"
    );
    drop(third);

    // Fourth life: an unreadable state file is moved aside, never silently overwritten.
    std::fs::write(&state, "{ not json").unwrap();
    let fourth = start(&edited, &p);
    let rows = servers_state(admin);
    assert!(row(&rows, "dynamic", "d1").is_none());
    assert!(row(&rows, "be", "s3").is_some());
    let stderr = fourth.stderr_so_far();
    assert!(
        stderr.contains("not a Switchyard runtime state file") && stderr.contains("moved to"),
        "{stderr}"
    );
    let kept_aside = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(".bad-"));
    assert!(kept_aside, "the unreadable file must be kept");
}

fn libc_sigkill() -> i32 {
    switchyard_testkit::libc::SIGKILL
}
