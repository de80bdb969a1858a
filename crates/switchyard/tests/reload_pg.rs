//! Reloads under real PostgreSQL load: pgbench with persistent connections and with a new
//! connection per transaction runs through Switchyard while the configuration is reloaded
//! again and again; not one transaction may fail.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchyard_testkit::{
    cli, free_port, pgbench, require_postgres_or_return, PgInstance, PgbenchReport, Switchyard,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn config(admin: u16, front: u16, a: u16, b: u16, client_timeout: &str) -> String {
    format!(
        "global\n    maxconn 500\n    stats socket ipv4@127.0.0.1:{admin} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client {client_timeout}\n    timeout server 1m\n\
         listen pg\n    bind 127.0.0.1:{front}\n    balance leastconn\n\
         \x20   server a 127.0.0.1:{a} check inter 500ms\n    server b 127.0.0.1:{b} check inter 500ms\n"
    )
}

/// Runs pgbench with `args` while the configuration is reloaded every 250 ms; returns the
/// report and the number of reloads.
fn pgbench_while_reloading(args: &[&str]) -> Option<(PgbenchReport, u32)> {
    let a = PgInstance::start_named("a").unwrap();
    let b = PgInstance::start_named("b").unwrap();
    a.pgbench_init(1).unwrap();
    b.pgbench_init(1).unwrap();
    let (admin, front) = (free_port(), free_port());
    let first = config(admin, front, a.port(), b.port(), "1m");
    let second = config(admin, front, a.port(), b.port(), "2m");
    let sy = Switchyard::start_with(BIN, &first, &[], Some(&[front, admin])).unwrap();
    let path = sy.config_path().to_path_buf();

    let running = Arc::new(AtomicBool::new(true));
    let reloads = Arc::new(AtomicU32::new(0));
    let reloader = {
        let (running, reloads) = (Arc::clone(&running), Arc::clone(&reloads));
        std::thread::spawn(move || {
            let mut flip = false;
            while running.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                flip = !flip;
                std::fs::write(&path, if flip { &second } else { &first }).unwrap();
                let answer = cli(admin, "reload");
                assert!(answer.starts_with("Success=1"), "{answer}");
                reloads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let report = pgbench(front, args).unwrap();
    running.store(false, Ordering::Relaxed);
    reloader.join().unwrap();
    drop(sy);
    Some((report, reloads.load(Ordering::Relaxed)))
}

#[test]
fn persistent_pgbench_sessions_survive_reloads_without_a_failed_transaction() {
    require_postgres_or_return!();
    let (report, reloads) =
        pgbench_while_reloading(&["-S", "-c", "4", "-j", "2", "-T", "6"]).unwrap();
    eprintln!(
        "pgbench -S -c 4 -T 6 (persistent): {} transactions, {} failed, exit {:?}, across {reloads} reloads",
        report.transactions, report.failed, report.exit_code
    );
    assert!(reloads >= 10, "only {reloads} reloads");
    assert_eq!(report.exit_code, Some(0), "{}", report.raw);
    assert_eq!(report.failed, 0, "{}", report.raw);
    assert!(report.transactions > 0);
}

#[test]
fn a_connection_per_transaction_is_never_refused_across_reloads() {
    require_postgres_or_return!();
    let (report, reloads) =
        pgbench_while_reloading(&["-S", "-C", "-c", "4", "-j", "2", "-T", "6"]).unwrap();
    eprintln!(
        "pgbench -S -C -c 4 -T 6 (new connection per transaction): {} transactions, {} failed, exit {:?}, across {reloads} reloads",
        report.transactions, report.failed, report.exit_code
    );
    assert!(reloads >= 10, "only {reloads} reloads");
    assert_eq!(report.exit_code, Some(0), "{}", report.raw);
    assert_eq!(report.failed, 0, "{}", report.raw);
    assert!(report.transactions > 0);
}
