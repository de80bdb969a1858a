//! End-to-end: a `Logger` sending to a real UDP socket and to a unix datagram socket.

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_config::{Facility, Level, LogAddress, LogFormat, LogTarget, Span};
use switchyard_log::{Logger, TimeZone};

fn target(address: LogAddress, format: LogFormat, max_level: Level) -> LogTarget {
    LogTarget {
        span: Span {
            file: Arc::from("test.cfg"),
            line: 1,
        },
        address,
        facility: Facility::Local2,
        max_level,
        min_level: None,
        format,
        max_len: None,
    }
}

fn receiver() -> UdpSocket {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    rx
}

fn recv(rx: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 70000];
    let n = rx.recv(&mut buf).expect("datagram");
    buf[..n].to_vec()
}

/// Asserts nothing (more) arrives.
fn assert_silent(rx: &UdpSocket) {
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    if let Ok(n) = rx.recv(&mut buf) {
        panic!(
            "unexpected datagram {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
}

/// 2022-11-21 23:51:05 UTC
fn t() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_669_074_665)
}

#[test]
fn udp_rfc3164_exact_bytes() {
    let rx = receiver();
    let addr = rx.local_addr().unwrap();
    let logger = Logger::new(
        &[target(
            LogAddress::Udp(addr),
            LogFormat::Rfc3164,
            Level::Debug,
        )],
        "haproxy",
        None,
    )
    .unwrap()
    .with_timezone(TimeZone::Utc)
    .with_pid(1234);
    assert!(!logger.is_empty());
    logger.log_at(
        Level::Info,
        t(),
        "10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0",
    );
    assert_eq!(
        String::from_utf8(recv(&rx)).unwrap(),
        "<150>Nov 21 23:51:05 haproxy[1234]: 10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt \
         bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0\n"
    );
    assert_eq!(logger.dropped(), 0);
}

#[test]
fn udp_log_uses_current_time_and_pid() {
    let rx = receiver();
    let addr = rx.local_addr().unwrap();
    let logger = Logger::new(
        &[target(
            LogAddress::Udp(addr),
            LogFormat::Rfc5424,
            Level::Info,
        )],
        "switchyard",
        Some("lb1"),
    )
    .unwrap();
    logger.log(Level::Notice, "started");
    let got = String::from_utf8(recv(&rx)).unwrap();
    assert!(got.starts_with("<149>1 "), "{got}");
    let pid = std::process::id();
    assert!(
        got.ends_with(&format!(" lb1 switchyard {pid} - - started\n")),
        "{got}"
    );
}

#[test]
fn level_filtering_and_min_level_cap() {
    let rx = receiver();
    let addr = rx.local_addr().unwrap();
    let mut capped = target(LogAddress::Udp(addr), LogFormat::Short, Level::Notice);
    capped.min_level = Some(Level::Err);
    let logger = Logger::new(&[capped], "haproxy", None).unwrap();
    assert!(logger.enabled(Level::Notice));
    assert!(!logger.enabled(Level::Info));

    logger.log(Level::Info, "too verbose");
    logger.log(Level::Debug, "too verbose");
    assert_silent(&rx);

    logger.log(Level::Notice, "notice");
    assert_eq!(recv(&rx), b"<5>notice\n");
    logger.log(Level::Err, "err");
    assert_eq!(recv(&rx), b"<3>err\n");
    // More severe than min level: sent, level capped to `err` (HAProxy semantics).
    logger.log(Level::Emerg, "emerg");
    assert_eq!(recv(&rx), b"<3>emerg\n");
}

#[test]
fn several_targets_each_with_own_format() {
    let rx1 = receiver();
    let rx2 = receiver();
    let mut t2 = target(
        LogAddress::Udp(rx2.local_addr().unwrap()),
        LogFormat::Raw,
        Level::Warning,
    );
    t2.max_len = Some(80);
    let logger = Logger::new(
        &[
            target(
                LogAddress::Udp(rx1.local_addr().unwrap()),
                LogFormat::Short,
                Level::Info,
            ),
            t2,
        ],
        "haproxy",
        None,
    )
    .unwrap();
    logger.log(Level::Info, "only first");
    assert_eq!(recv(&rx1), b"<6>only first\n");
    assert_silent(&rx2);
    let long = "x".repeat(300);
    logger.log(Level::Warning, &long);
    assert_eq!(recv(&rx1), format!("<4>{long}\n").into_bytes());
    assert_eq!(recv(&rx2), format!("{}\n", "x".repeat(80)).into_bytes());
}

#[test]
fn concurrent_logging() {
    let rx = receiver();
    let logger = Arc::new(
        Logger::new(
            &[target(
                LogAddress::Udp(rx.local_addr().unwrap()),
                LogFormat::Raw,
                Level::Info,
            )],
            "haproxy",
            None,
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let logger = Arc::clone(&logger);
            std::thread::spawn(move || {
                for j in 0..10 {
                    logger.log(Level::Info, &format!("t{i} m{j}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut got: Vec<String> = (0..40)
        .map(|_| String::from_utf8(recv(&rx)).unwrap())
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..4)
        .flat_map(|i| (0..10).map(move |j| format!("t{i} m{j}\n")))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn unix_datagram_target_and_missing_path() {
    let dir = std::env::temp_dir().join(format!("switchyard-log-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.sock");
    let _ = std::fs::remove_file(&path);

    // The syslog daemon is not there yet: messages are dropped, nothing blocks or fails.
    let logger = Logger::new(
        &[target(
            LogAddress::Unix(path.clone()),
            LogFormat::Rfc3164,
            Level::Info,
        )],
        "haproxy",
        None,
    )
    .unwrap()
    .with_timezone(TimeZone::Utc)
    .with_pid(42);
    logger.log_at(Level::Info, t(), "lost");
    assert_eq!(logger.dropped(), 1);

    // The daemon appears: the next message gets through without recreating the logger.
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    logger.log_at(Level::Info, t(), "hello");
    let mut buf = [0u8; 2048];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"<150>Nov 21 23:51:05 haproxy[42]: hello\n");

    // The daemon restarts (new socket at the same path): still delivered.
    drop(rx);
    std::fs::remove_file(&path).unwrap();
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    logger.log_at(Level::Info, t(), "again");
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"<150>Nov 21 23:51:05 haproxy[42]: again\n");

    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn stdout_and_stderr_targets_do_not_fail() {
    let logger = Logger::new(
        &[
            target(LogAddress::Stdout, LogFormat::Raw, Level::Info),
            target(LogAddress::Stderr, LogFormat::Short, Level::Info),
        ],
        "haproxy",
        None,
    )
    .unwrap();
    logger.log(Level::Info, "switchyard-log stdout/stderr smoke test");
    assert_eq!(logger.dropped(), 0);
}
