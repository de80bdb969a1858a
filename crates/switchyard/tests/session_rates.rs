//! Session and connection rates and `lastsess` through the real binary: a burst of sessions
//! shows in `show stat` (CSV and typed), `show info` and the Prometheus exporter, the rates
//! fall back to 0 once the frontend has been idle for two seconds, and `clear counters`
//! resets the maxima (and `all` the last-session times) as HAProxy does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use switchyard_testkit::{cli, free_port, greeter, greeting_through, Switchyard};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Sessions in the burst.
const N: u32 = 20;

/// `show stat` rows by `pxname/svname`, each a map of column to value.
fn stat(port: u16) -> HashMap<String, HashMap<String, String>> {
    let reply = cli(port, "show stat");
    let mut lines = reply.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let row: HashMap<String, String> = header
                .iter()
                .zip(line.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            (format!("{}/{}", row["pxname"], row["svname"]), row)
        })
        .collect()
}

/// A numeric column of a row (`-1` included).
fn num(rows: &HashMap<String, HashMap<String, String>>, row: &str, column: &str) -> i64 {
    let value = &rows[row][column];
    value
        .parse()
        .unwrap_or_else(|_| panic!("{row} {column} = {value:?} is not a number"))
}

fn info(port: u16) -> HashMap<String, i64> {
    cli(port, "show info")
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn metrics(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reading /metrics");
    reply
}

/// The value of one series, e.g. `haproxy_server_last_session_seconds{proxy="be",server="s1"}`.
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn a_burst_of_sessions_shows_in_rates_and_lastsess_then_rates_fall_to_zero() {
    let (admin, prom, front) = (free_port(), free_port(), free_port());
    let (s1, s2, s3) = (greeter("s1"), greeter("s2"), greeter("s3"));
    let config = format!(
        "global\n    stats socket ipv4@127.0.0.1:{admin} level admin\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         frontend metrics\n    bind 127.0.0.1:{prom}\n    mode http\n\
         \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be\n\
         backend be\n    balance roundrobin\n    server s1 127.0.0.1:{s1}\n    server s2 127.0.0.1:{s2}\n\
         \x20   server s3 127.0.0.1:{s3} backup\n"
    );
    // Waiting on the stats socket only: a probe of the frontend would be a session.
    let _proxy = Switchyard::start_with(BIN, &config, &[], Some(&[admin, prom])).unwrap();

    let before = stat(admin);
    for row in ["fe/FRONTEND", "be/BACKEND", "be/s1", "be/s3"] {
        assert_eq!(num(&before, row, "rate"), 0, "{row}");
        assert_eq!(num(&before, row, "rate_max"), 0, "{row}");
    }
    for row in ["be/BACKEND", "be/s1", "be/s3"] {
        assert_eq!(num(&before, row, "lastsess"), -1, "{row}");
    }
    assert_eq!(num(&before, "fe/FRONTEND", "conn_rate_max"), 0);

    let burst = Instant::now();
    for _ in 0..N {
        assert!(greeting_through(front).starts_with('s'));
    }
    let took = burst.elapsed();
    let after = stat(admin);
    let info_after = info(admin);
    let metrics_after = metrics(prom);
    let last_session = Instant::now();
    let context = format!("{N} sessions in {took:?}: {after:#?}");

    // The burst fits in one or two seconds: the busiest one saw at least half of it.
    for (row, total) in [("fe/FRONTEND", N), ("be/BACKEND", N), ("be/s1", N / 2)] {
        let (rate, max) = (num(&after, row, "rate"), num(&after, row, "rate_max"));
        assert!(
            (1..=i64::from(total)).contains(&rate),
            "{row} rate {rate}\n{context}"
        );
        assert!(
            (i64::from(total.div_ceil(2))..=i64::from(total)).contains(&max),
            "{row} rate_max {max}\n{context}"
        );
    }
    let conn_max = num(&after, "fe/FRONTEND", "conn_rate_max");
    assert!(
        (i64::from(N / 2)..=i64::from(N)).contains(&conn_max),
        "{context}"
    );
    assert!(num(&after, "fe/FRONTEND", "conn_rate") >= 1, "{context}");
    for row in ["be/BACKEND", "be/s1", "be/s2"] {
        assert!(
            (0..=1).contains(&num(&after, row, "lastsess")),
            "{row}\n{context}"
        );
    }
    // The backup server never had a session.
    assert_eq!(num(&after, "be/s3", "rate_max"), 0);
    assert_eq!(num(&after, "be/s3", "lastsess"), -1);

    // Process-wide: the frontends' connections, not the stats socket's (as HAProxy's CLI).
    assert!(info_after["SessRate"] >= 1, "{info_after:?}");
    assert!(
        (i64::from(N / 2)..=i64::from(N)).contains(&info_after["MaxSessRate"]),
        "{info_after:?}"
    );
    assert!(
        (i64::from(N / 2)..=i64::from(N) + 1).contains(&info_after["MaxConnRate"]),
        "{info_after:?}"
    );

    // The same values in the typed output and the exporter.
    let typed = cli(admin, "show stat typed");
    assert!(
        typed
            .lines()
            .any(|l| l.starts_with("F.") && l.contains(".rate_max.") && !l.ends_with(":0")),
        "{typed}"
    );
    let be_max = series(
        &metrics_after,
        "haproxy_backend_max_session_rate{proxy=\"be\"}",
    );
    assert!(be_max >= f64::from(N / 2), "{metrics_after}");
    let last = series(
        &metrics_after,
        "haproxy_server_last_session_seconds{proxy=\"be\",server=\"s1\"}",
    );
    assert!((0.0..=1.0).contains(&last), "{metrics_after}");
    assert_eq!(
        series(
            &metrics_after,
            "haproxy_server_last_session_seconds{proxy=\"be\",server=\"s3\"}"
        ),
        -1.0
    );
    assert!(series(&metrics_after, "haproxy_process_max_session_rate") >= f64::from(N / 2));

    // Idle: the rates decay to 0 within two seconds of the last session; maxima stay.
    let idle = loop {
        let rows = stat(admin);
        let rates: Vec<i64> = ["fe/FRONTEND", "be/BACKEND", "be/s1", "be/s2"]
            .iter()
            .map(|row| num(&rows, row, "rate"))
            .chain([num(&rows, "fe/FRONTEND", "conn_rate")])
            .collect();
        if rates.iter().all(|&r| r == 0) {
            break rows;
        }
        assert!(
            last_session.elapsed() < Duration::from_millis(2_500),
            "rates {rates:?} still not 0 {:?} after the last session",
            last_session.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        num(&idle, "fe/FRONTEND", "rate_max"),
        num(&after, "fe/FRONTEND", "rate_max")
    );
    let info_idle = info(admin);
    assert_eq!(info_idle["SessRate"], 0, "{info_idle:?}");
    assert_eq!(info_idle["ConnRate"], 0, "{info_idle:?}");

    std::thread::sleep(Duration::from_millis(
        2_100u64.saturating_sub(last_session.elapsed().as_millis() as u64),
    ));
    let later = stat(admin);
    assert!(num(&later, "be/s1", "lastsess") >= 2, "{later:#?}");

    // `clear counters` zeroes the maxima and keeps the last-session times; `all` forgets them.
    assert_eq!(cli(admin, "clear counters"), "\n");
    let cleared = stat(admin);
    for row in ["fe/FRONTEND", "be/BACKEND", "be/s1"] {
        assert_eq!(num(&cleared, row, "rate_max"), 0, "{row}");
    }
    assert_eq!(num(&cleared, "fe/FRONTEND", "conn_rate_max"), 0);
    assert!(num(&cleared, "be/BACKEND", "lastsess") >= 2);
    let info_cleared = info(admin);
    assert_eq!(info_cleared["MaxSessRate"], 0);
    assert_eq!(info_cleared["MaxConnRate"], 0);
    assert_eq!(cli(admin, "clear counters all"), "\n");
    let all = stat(admin);
    for row in ["be/BACKEND", "be/s1", "be/s2"] {
        assert_eq!(num(&all, row, "lastsess"), -1, "{row}");
    }
}
