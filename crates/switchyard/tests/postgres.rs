//! The real binary in front of real PostgreSQL servers, driven with psql and pgbench.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_testkit::{
    free_port, node_name_at, require_postgres_or_return, PgInstance, Switchyard,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn config(front: u16, body: &str, servers: &[(&str, u16, &str)]) -> String {
    let mut text = format!(
        "global\n    maxconn 500\n    log stdout format raw local0 info\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 1s\n\
         \x20   timeout client 1m\n    timeout server 1m\n\
         listen pg\n    bind 127.0.0.1:{front}\n{body}"
    );
    for (name, port, extra) in servers {
        text.push_str(&format!("    server {name} 127.0.0.1:{port} {extra}\n"));
    }
    text
}

/// tcplog lines of the `pg` proxy that Switchyard printed so far.
fn log_lines(proxy: &Switchyard) -> Vec<String> {
    proxy
        .stdout_so_far()
        .lines()
        .filter(|l| l.contains("] pg pg/"))
        .map(str::to_string)
        .collect()
}

#[test]
fn psql_and_pgbench_through_the_proxy() {
    require_postgres_or_return!();
    let a = PgInstance::start_named("a").unwrap();
    let b = PgInstance::start_named("b").unwrap();
    a.pgbench_init(1).unwrap();
    b.pgbench_init(1).unwrap();
    let front = free_port();
    let mut proxy = Switchyard::start(
        BIN,
        &config(
            front,
            "    balance roundrobin\n",
            &[("a", a.port(), ""), ("b", b.port(), "")],
        ),
    )
    .unwrap();

    // Round robin: consecutive psql sessions alternate between the two servers.
    let names: Vec<String> = (0..4).map(|_| node_name_at(front).unwrap()).collect();
    assert_ne!(names[0], names[1], "{names:?}");
    assert_eq!(names[0], names[2], "{names:?}");
    assert_eq!(names[1], names[3], "{names:?}");

    // pgbench with persistent connections, then with one connection per transaction.
    let persistent = a
        .pgbench(Some(front), &["-S", "-c", "4", "-j", "2", "-T", "3"])
        .unwrap();
    persistent.assert_clean();
    assert!(persistent.transactions > 100, "{}", persistent.raw);
    let per_tx = a
        .pgbench(Some(front), &["-S", "-C", "-c", "4", "-j", "2", "-T", "3"])
        .unwrap();
    per_tx.assert_clean();
    assert!(per_tx.transactions > 20, "{}", per_tx.raw);

    // Every session was logged in tcplog format, and ended normally.
    std::thread::sleep(Duration::from_millis(300));
    let lines = log_lines(&proxy);
    assert!(
        lines.len() as u64 >= 4 + 4 + per_tx.transactions,
        "only {} lines",
        lines.len()
    );
    assert!(lines.iter().all(|l| l.contains(" -- ")), "{lines:#?}");
    assert!(proxy
        .stop(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}

#[test]
fn killing_a_backend_sends_new_connections_to_the_survivors() {
    require_postgres_or_return!();
    let a = PgInstance::start_named("a").unwrap();
    let mut b = PgInstance::start_named("b").unwrap();
    let c = PgInstance::start_named("c").unwrap();
    let front = free_port();
    let proxy = Switchyard::start(
        BIN,
        &config(
            front,
            "    balance roundrobin\n    retries 2\n    option redispatch\n",
            &[
                ("a", a.port(), ""),
                ("b", b.port(), ""),
                ("c", c.port(), ""),
            ],
        ),
    )
    .unwrap();

    // A client loop opens a new session for every query, as short-lived clients do.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        std::thread::spawn(move || {
            let mut answered = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match node_name_at(front) {
                    Ok(name) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        answered.push((Instant::now(), name));
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            answered
        })
    };
    while ok.load(Ordering::Relaxed) < 9 {
        std::thread::sleep(Duration::from_millis(20));
    }
    b.kill9().unwrap();
    let killed_at = Instant::now();
    let before_kill = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < before_kill + 15 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "clients stalled after the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let answered = client.join().unwrap();

    // At most the one session in flight at the moment of the kill may fail.
    assert!(
        failed.load(Ordering::Relaxed) <= 1,
        "failed: {}",
        failed.load(Ordering::Relaxed)
    );
    let before: HashSet<&str> = answered
        .iter()
        .filter(|(t, _)| *t < killed_at)
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(before, HashSet::from(["a", "b", "c"]));
    let after: Vec<&str> = answered
        .iter()
        .filter(|(t, _)| *t > killed_at + Duration::from_millis(100))
        .map(|(_, n)| n.as_str())
        .collect();
    assert!(after.len() >= 10);
    assert!(!after.contains(&"b"), "the dead server answered: {after:?}");
    assert!(after.contains(&"a") && after.contains(&"c"), "{after:?}");

    // The log shows sessions sent to the dead server being redispatched ("+N" retries) and
    // still ending normally on a survivor.
    std::thread::sleep(Duration::from_millis(300));
    let lines = log_lines(&proxy);
    let redispatched: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" -- ") && l.contains("/+"))
        .collect();
    assert!(
        !redispatched.is_empty(),
        "no redispatch logged:\n{}",
        lines.join("\n")
    );
    assert!(redispatched
        .iter()
        .all(|l| l.contains(" pg/a ") || l.contains(" pg/c ")));
}

/// The same crash with HAProxy's `pgsql-check`: the time from `kill -9` to the check marking
/// the server DOWN, and what clients opening a session per query saw meanwhile (`retries` +
/// `option redispatch` hide the dead server from them before the check has spoken).
#[test]
fn failover_of_a_killed_checked_backend_is_detected_by_pgsql_check() {
    require_postgres_or_return!();
    let a = PgInstance::start_named("a").unwrap();
    let mut b = PgInstance::start_named("b").unwrap();
    let front = free_port();
    let check = "check inter 100ms rise 2 fall 2";
    let proxy = Switchyard::start(
        BIN,
        &config(
            front,
            "    balance roundrobin\n    retries 2\n    option redispatch\n    timeout check 1s\n\
             \x20   option pgsql-check user postgres\n",
            &[("a", a.port(), check), ("b", b.port(), check)],
        ),
    )
    .unwrap();
    // Both servers pass their checks and take traffic.
    let seen: HashSet<String> = (0..6).map(|_| node_name_at(front).unwrap()).collect();
    assert_eq!(seen, HashSet::from(["a".to_string(), "b".to_string()]));

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match node_name_at(front) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let sessions = || ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let sessions_at_kill = sessions();
    let killed = Instant::now();
    b.kill9().unwrap();
    let kill_returned = killed.elapsed();
    let down = loop {
        if proxy.output_so_far().contains("Server pg/b is DOWN") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "b not marked DOWN:\n{}",
            proxy.output_so_far()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let sessions_until_down = sessions() - sessions_at_kill;
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "failover: postgres killed (kill -9, {} ms until its port refused) -> marked DOWN by pgsql-check after {} ms (inter 100ms, fall 2); {sessions_until_down} client sessions completed meanwhile, {failed} of {} failed in all",
        kill_returned.as_millis(),
        down.as_millis(),
        ok.load(Ordering::Relaxed) + failed,
    );
    // At most the one session in flight at the moment of the kill may fail.
    assert!(failed <= 1, "failed: {failed}");
    // Two failed checks 100 ms apart, plus slack for a busy machine.
    assert!(down < Duration::from_secs(2), "{down:?}");
    let output = proxy.output_so_far();
    assert!(
        output.contains("Server pg/b is DOWN, reason: Layer4 connection problem"),
        "{output}"
    );
    assert!(
        output.contains("1 active and 0 backup servers left"),
        "{output}"
    );
    for _ in 0..4 {
        assert_eq!(node_name_at(front).unwrap(), "a");
    }
}

#[test]
fn sessions_queue_under_server_maxconn() {
    require_postgres_or_return!();
    let pg = PgInstance::start_named("only").unwrap();
    pg.pgbench_init(1).unwrap();
    let front = free_port();
    let proxy = Switchyard::start(
        BIN,
        &config(
            front,
            "    timeout queue 30s\n",
            &[("only", pg.port(), "maxconn 3")],
        ),
    )
    .unwrap();

    // Sample the server's client connections while 12 clients hammer it with a new
    // connection per transaction through a 3-slot server. One pgbench thread per client:
    // pgbench connects synchronously, so a thread blocked on a queued connect would stall the
    // other clients of that thread, which hold the server slots.
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let stop = Arc::clone(&stop);
        let port = pg.port();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Counts client backends other than this monitoring session.
                let sql = "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()";
                if let Ok(n) = switchyard_testkit::psql(port, sql) {
                    peak = peak.max(n.trim().parse().unwrap_or(0));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let report = pg
        .pgbench(
            Some(front),
            &["-S", "-C", "-c", "12", "-j", "12", "-T", "4"],
        )
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let peak = monitor.join().unwrap();
    assert_eq!(report.exit_code, Some(0), "{}", report.raw);
    assert_eq!(report.failed, 0, "{}", report.raw);
    assert!(report.transactions > 50, "{}", report.raw);
    assert!(peak <= 3, "the server saw {peak} connections, maxconn is 3");
    assert!(peak >= 2, "the load never reached the server ({peak})");

    // Some sessions waited in the queue: their Tw (first of Tw/Tc/Tt) is above zero.
    std::thread::sleep(Duration::from_millis(300));
    let queued = log_lines(&proxy)
        .iter()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .and_then(|timers| timers.split('/').next())
                .and_then(|tw| tw.parse::<i64>().ok())
                .is_some_and(|tw| tw > 0)
        })
        .count();
    assert!(queued > 0, "no session waited in the queue");
}
