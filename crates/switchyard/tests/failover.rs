//! Database-aware health checks end to end: the real binary in front of a PostgreSQL primary
//! with a streaming standby (promotion, lag), MariaDB with `read_only` toggled, and a
//! three-node Galera cluster with a node desynced and stopped. Each test prints the time from
//! the change to traffic following it.

use std::time::{Duration, Instant};

use switchyard_testkit::{
    free_port, mariadb_node_name_at, node_name_at, require_postgres_or_return, GaleraCluster,
    MariaInstance, PgInstance, Switchyard,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Polls `probe` until it returns `want`; returns how long that took.
fn wait_for(
    what: &str,
    limit: Duration,
    want: &str,
    mut probe: impl FnMut() -> Option<String>,
) -> Duration {
    let started = Instant::now();
    loop {
        if probe().as_deref() == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pg_config(rw: u16, ro: u16, primary: &PgInstance, standby: &PgInstance) -> String {
    let servers = format!(
        "    server p 127.0.0.1:{} check inter 200ms rise 1 fall 1\n\
         \x20   server s 127.0.0.1:{} check inter 200ms rise 1 fall 1\n",
        primary.port(),
        standby.port()
    );
    format!(
        "global\n    log stdout format raw local0 info\n\
         defaults\n    mode tcp\n    log global\n    timeout connect 1s\n    timeout check 1s\n\
         \x20   timeout client 1m\n    timeout server 1m\n    retries 1\n    option redispatch\n\
         listen pg_rw\n    bind 127.0.0.1:{rw}\n    db-check postgres user postgres role primary\n{servers}\
         listen pg_ro\n    bind 127.0.0.1:{ro}\n    db-check postgres user postgres role standby max-lag 2s\n{servers}"
    )
}

#[test]
fn promotion_moves_the_primary_backend_to_the_promoted_standby() {
    require_postgres_or_return!();
    let mut primary = PgInstance::start_primary("p").unwrap();
    let standby = PgInstance::start_standby(&primary, "s").unwrap();
    standby
        .wait_replay_caught_up(&primary, Duration::from_secs(20))
        .unwrap();
    let (rw, ro) = (free_port(), free_port());
    let mut proxy = Switchyard::start(BIN, &pg_config(rw, ro, &primary, &standby)).unwrap();

    // Checks settle (servers start UP, so each backend first drops the wrong-role server):
    // writes go to the primary, reads to the standby.
    for line in ["Server pg_rw/s is DOWN", "Server pg_ro/p is DOWN"] {
        proxy
            .wait_for_output(line, Duration::from_secs(10))
            .unwrap();
    }
    wait_for("rw -> p", Duration::from_secs(10), "p", || {
        node_name_at(rw).ok()
    });
    wait_for("ro -> s", Duration::from_secs(10), "s", || {
        node_name_at(ro).ok()
    });
    for _ in 0..5 {
        assert_eq!(node_name_at(rw).unwrap(), "p");
        assert_eq!(node_name_at(ro).unwrap(), "s");
    }

    // The primary dies; the standby is promoted, as a failover manager would do.
    primary.kill9().unwrap();
    let changed = Instant::now();
    standby.promote().unwrap();
    let rerouted = wait_for(
        "rw -> s after promotion",
        Duration::from_secs(20),
        "s",
        || node_name_at(rw).ok(),
    );
    eprintln!(
        "promotion: primary killed + standby promoted -> read-write traffic on the new primary after {} ms (inter 200ms, fall 1)",
        changed.elapsed().as_millis()
    );
    let _ = rerouted;
    for _ in 0..5 {
        assert_eq!(node_name_at(rw).unwrap(), "s");
    }
    // The promoted node is no longer a standby: the read-only backend has no server left.
    wait_for("ro has no server", Duration::from_secs(10), "none", || {
        Some(node_name_at(ro).map_or("none".to_string(), |n| n))
    });
    let output = proxy.stdout_so_far() + &proxy.stderr_so_far();
    assert!(output.contains("Server pg_rw/s is UP"), "{output}");
    assert!(output.contains("Server pg_rw/p is DOWN"), "{output}");
    assert!(output.contains("Server pg_ro/s is DOWN"), "{output}");
}

#[test]
fn a_standby_lagging_past_max_lag_leaves_the_read_only_backend() {
    require_postgres_or_return!();
    let primary = PgInstance::start_primary("p").unwrap();
    let standby = PgInstance::start_standby(&primary, "s").unwrap();
    standby
        .wait_replay_caught_up(&primary, Duration::from_secs(20))
        .unwrap();
    let (rw, ro) = (free_port(), free_port());
    let proxy = Switchyard::start(BIN, &pg_config(rw, ro, &primary, &standby)).unwrap();
    wait_for("ro -> s", Duration::from_secs(10), "s", || {
        node_name_at(ro).ok()
    });

    // A fresh commit replayed, so that the standby's lag (measured from its last replayed
    // commit) is near zero; after the pause the primary keeps writing and the standby falls
    // behind.
    primary
        .psql(None, "create table if not exists lag_probe(t timestamptz)")
        .unwrap();
    let commit_replayed = || {
        primary
            .psql(None, "insert into lag_probe values (now())")
            .unwrap();
        standby
            .wait_replay_caught_up(&primary, Duration::from_secs(10))
            .unwrap();
    };
    commit_replayed();
    // A check that ran before the standby replayed any commit found its lag unknown and
    // took it out of pg_ro until the next one: wait until it has answered there over more
    // than three check intervals, so that the pause below starts from a standby in pg_ro.
    let mut in_since = Instant::now();
    wait_for(
        "s steadily in pg_ro",
        Duration::from_secs(20),
        "steady",
        || {
            if node_name_at(ro).ok().as_deref() != Some("s") {
                in_since = Instant::now();
            }
            (in_since.elapsed() >= Duration::from_millis(700)).then(|| "steady".to_string())
        },
    );
    // The wait above takes 700 ms or more: a commit again right before the pause, or the lag
    // would start from that much on a slow machine (CI: out of pg_ro 972 ms after it).
    commit_replayed();
    standby.pause_replay().unwrap();
    let paused = Instant::now();
    primary
        .psql(None, "create table if not exists lag_probe(t timestamptz)")
        .unwrap();
    let took = wait_for("s leaves pg_ro", Duration::from_secs(30), "none", || {
        let _ = primary.psql(None, "insert into lag_probe values (now())");
        Some(node_name_at(ro).map_or("none".to_string(), |n| n))
    });
    eprintln!(
        "failover: standby replay paused -> out of pg_ro (max-lag 2s) after {} ms",
        paused.elapsed().as_millis()
    );
    assert!(
        took >= Duration::from_secs(1),
        "left before lagging: {took:?}"
    );
    standby.resume_replay().unwrap();
    let back = wait_for("s back in pg_ro", Duration::from_secs(30), "s", || {
        node_name_at(ro).ok()
    });
    eprintln!(
        "failover: replay resumed -> back in pg_ro after {} ms",
        back.as_millis()
    );
    let output = proxy.stdout_so_far() + &proxy.stderr_so_far();
    assert!(
        output.contains("max-lag"),
        "the reason names the lag: {output}"
    );
}

#[test]
fn a_mariadb_server_turned_read_only_leaves_the_writable_backend() {
    if !switchyard_testkit::require_mariadb() {
        return;
    }
    let a = MariaInstance::start("a").unwrap();
    let b = MariaInstance::start("b").unwrap();
    let front = free_port();
    let config = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout check 1s\n    timeout client 1m\n    timeout server 1m\n\
         listen rw\n    bind 127.0.0.1:{front}\n    balance first\n    db-check mysql user root role primary\n\
         \x20   server a 127.0.0.1:{} check inter 200ms rise 1 fall 1\n\
         \x20   server b 127.0.0.1:{} check inter 200ms rise 1 fall 1\n",
        a.port(),
        b.port()
    );
    let _proxy = Switchyard::start(BIN, &config).unwrap();
    wait_for("rw -> a", Duration::from_secs(10), "a", || {
        mariadb_node_name_at(front).ok()
    });
    a.set_read_only(true).unwrap();
    let took = wait_for("rw -> b", Duration::from_secs(10), "b", || {
        mariadb_node_name_at(front).ok()
    });
    eprintln!(
        "failover: read_only=ON on a -> writes on b after {} ms",
        took.as_millis()
    );
    a.set_read_only(false).unwrap();
    let took = wait_for("rw -> a again", Duration::from_secs(10), "a", || {
        mariadb_node_name_at(front).ok()
    });
    eprintln!(
        "failover: read_only=OFF on a -> back on a after {} ms",
        took.as_millis()
    );
}

/// Timings of a node leaving, all from the moment the change (stop or kill) began.
struct Leaving {
    /// How long the change itself took (a clean shutdown, or kill -9 until the port refuses).
    change_took: Duration,
    /// Until the check logged the node DOWN.
    down_after: Duration,
    /// Until a client query through the proxy was first answered by another node.
    rerouted_after: Duration,
    /// Client queries through the proxy that failed meanwhile.
    failed_queries: u32,
}

/// Runs `change` (which makes node `from` leave) while a client queries through `front` and
/// the proxy's output is watched for a new `down_line`: the check's verdict and the traffic
/// are timed separately, since `retries` + `option redispatch` can move traffic before the
/// check has marked anything.
fn leave_and_measure(
    proxy: &Switchyard,
    front: u16,
    from: &str,
    down_line: &str,
    change: impl FnOnce() + Send,
) -> Leaving {
    let limit = Duration::from_secs(60);
    let downs_before = proxy.output_so_far().matches(down_line).count();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let changing = scope.spawn(move || {
            change();
            started.elapsed()
        });
        let client = scope.spawn(move || {
            let mut failed_queries = 0;
            loop {
                match mariadb_node_name_at(front) {
                    Ok(name) if name != from => return (started.elapsed(), failed_queries),
                    Ok(_) => {}
                    Err(_) => failed_queries += 1,
                }
                assert!(started.elapsed() < limit, "traffic never left {from}");
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        while proxy.output_so_far().matches(down_line).count() == downs_before {
            assert!(
                started.elapsed() < limit,
                "no {down_line:?} within {limit:?}:\n{}",
                proxy.output_so_far()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let down_after = started.elapsed();
        let change_took = changing.join().unwrap();
        let (rerouted_after, failed_queries) = client.join().unwrap();
        Leaving {
            change_took,
            down_after,
            rerouted_after,
            failed_queries,
        }
    })
}

#[test]
fn galera_nodes_that_leave_sync_stop_taking_traffic() {
    if !switchyard_testkit::require_galera() {
        return;
    }
    let mut cluster = GaleraCluster::start(3).unwrap();
    let front = free_port();
    let mut config = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout check 1s\n    timeout client 1m\n    timeout server 1m\n\
         \x20   retries 1\n    option redispatch\n\
         listen galera\n    bind 127.0.0.1:{front}\n    balance first\n    db-check galera user root\n"
    );
    for i in 0..3 {
        config.push_str(&format!(
            "    server n{i} 127.0.0.1:{} check inter 200ms rise 1 fall 1\n",
            cluster.client_port(i)
        ));
    }
    let proxy = Switchyard::start(BIN, &config).unwrap();
    let name = |i: usize| cluster.node(i).name().to_string();
    let (n0, n1) = (name(0), name(1));
    let down = "Server galera/n0 is DOWN";
    wait_for("galera -> n0", Duration::from_secs(10), &n0, || {
        mariadb_node_name_at(front).ok()
    });

    // Desynced (Donor/Desynced, state 2): out unless allow-donor. The node still accepts
    // connections, so only the check can move traffic: both times are the same event.
    let desynced = leave_and_measure(&proxy, front, &n0, down, || cluster.desync(0).unwrap());
    eprintln!(
        "galera: node desynced -> marked DOWN by db-check after {} ms, traffic on {n1} after {} ms ({} failed queries)",
        desynced.down_after.as_millis(),
        desynced.rerouted_after.as_millis(),
        desynced.failed_queries
    );
    assert!(proxy
        .output_so_far()
        .contains("Server galera/n0 is DOWN, reason: Layer7"));
    cluster.resync(0).unwrap();
    let took = wait_for("galera -> n0 again", Duration::from_secs(20), &n0, || {
        mariadb_node_name_at(front).ok()
    });
    eprintln!(
        "galera: node resynced -> back after {} ms",
        took.as_millis()
    );

    // A node leaving the cluster with a clean shutdown: the check sees it go (it stops
    // accepting, then leaves the cluster) while the shutdown is still running.
    let stopped = leave_and_measure(&proxy, front, &n0, down, || cluster.stop_node(0).unwrap());
    let after_shutdown = match stopped.down_after.checked_sub(stopped.change_took) {
        Some(after) => format!("{} ms after it finished", after.as_millis()),
        None => "before it finished".to_string(),
    };
    eprintln!(
        "galera: node stopped -> marked DOWN by db-check {} ms after the stop began, {after_shutdown} (the shutdown took {} ms); traffic on a synced node after {} ms ({} failed queries; retries 1 + redispatch)",
        stopped.down_after.as_millis(),
        stopped.change_took.as_millis(),
        stopped.rerouted_after.as_millis(),
        stopped.failed_queries
    );
    // Bounded by the shutdown plus one interval and one check (`timeout connect 1s`).
    assert!(stopped.down_after < stopped.change_took + Duration::from_millis(1500));

    // The node comes back, then crashes: from the kill to DOWN is pure detection time.
    cluster.restart_node(0).unwrap();
    wait_for(
        "galera -> n0 after restart",
        Duration::from_secs(20),
        &n0,
        || mariadb_node_name_at(front).ok(),
    );
    let killed = leave_and_measure(&proxy, front, &n0, down, || cluster.kill9(0).unwrap());
    eprintln!(
        "galera: node killed (kill -9) -> marked DOWN by db-check after {} ms (inter 200ms, fall 1); traffic on a synced node after {} ms ({} failed queries; retries 1 + redispatch)",
        killed.down_after.as_millis(),
        killed.rerouted_after.as_millis(),
        killed.failed_queries
    );
    // One interval plus a refused connect, with slack for a busy machine.
    assert!(killed.down_after < Duration::from_millis(1500));
}

#[test]
fn haproxy_mysql_check_follows_a_killed_mariadb() {
    if !switchyard_testkit::require_mariadb() {
        return;
    }
    let mut a = MariaInstance::start("a").unwrap();
    let b = MariaInstance::start("b").unwrap();
    a.create_check_user("haproxy", None).unwrap();
    b.create_check_user("haproxy", None).unwrap();
    let front = free_port();
    let config = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout check 1s\n    timeout client 1m\n    timeout server 1m\n\
         \x20   retries 1\n    option redispatch\n\
         listen mysql\n    bind 127.0.0.1:{front}\n    balance first\n    option mysql-check user haproxy\n\
         \x20   server a 127.0.0.1:{} check inter 200ms rise 2 fall 2\n\
         \x20   server b 127.0.0.1:{} check inter 200ms rise 2 fall 2\n",
        a.port(),
        b.port()
    );
    let mut proxy = Switchyard::start(BIN, &config).unwrap();
    wait_for("mysql -> a", Duration::from_secs(10), "a", || {
        mariadb_node_name_at(front).ok()
    });
    a.kill9().unwrap();
    let killed = Instant::now();
    // Sessions are redispatched to b at once; the check takes `a` out within fall x inter.
    wait_for("mysql -> b", Duration::from_secs(10), "b", || {
        mariadb_node_name_at(front).ok()
    });
    proxy
        .wait_for_output("Server mysql/a is DOWN", Duration::from_secs(10))
        .unwrap();
    eprintln!(
        "failover: mariadb killed -> marked DOWN by mysql-check after {} ms (inter 200ms, fall 2)",
        killed.elapsed().as_millis()
    );
    // The check logs in and quits cleanly: no "Aborted connection" for its user on the
    // healthy server (readiness probes through the proxy may leave unauthenticated ones).
    let aborted_checks = b
        .log()
        .lines()
        .filter(|l| l.contains("Aborted connection") && l.contains("user: 'haproxy'"))
        .count();
    assert_eq!(aborted_checks, 0, "{}", b.log());
}
