//! The default (local time) formatters, with the process' zone forced to a known value.
//!
//! This file holds a single test so that changing `TZ` cannot race with another test thread
//! reading the environment or converting dates (each integration test file is its own
//! process).

use std::time::{Duration, UNIX_EPOCH};

use switchyard_config::{Facility, Level, LogFormat};
use switchyard_log::{
    format_tcplog, reload_timezone, Framing, Header, TcpLogRecord, TimeZone, Transport,
};

#[test]
fn local_time_follows_tz() {
    // 2009-02-06 12:12:51.443 UTC
    let accept = UNIX_EPOCH + Duration::from_millis(1_233_922_371_443);
    let rec = TcpLogRecord {
        backend: Some("bck"),
        server: Some("srv1"),
        tw: Some(0),
        tc: Some(0),
        tt: 5007,
        bytes_read: 212,
        retries: 3,
        ..TcpLogRecord::new("10.0.1.2:33313".parse().unwrap(), accept, "fnt")
    };
    let framing = Framing {
        format: LogFormat::Rfc5424,
        facility: Facility::Local0,
        max_len: 1024,
        transport: Transport::Datagram,
        tz: TimeZone::Local,
    };
    let header = Header {
        tag: "haproxy",
        hostname: None,
        pid: 1,
    };

    std::env::set_var("TZ", "UTC");
    reload_timezone();
    assert_eq!(
        format_tcplog(&rec),
        "10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0"
    );
    assert_eq!(
        framing.to_bytes(Level::Info, &header, accept, "m"),
        b"<134>1 2009-02-06T12:12:51.443000+00:00 - haproxy 1 - - m\n"
    );

    // A fixed-offset POSIX zone (no tzdata needed): UTC-5 is written "EST5".
    std::env::set_var("TZ", "EST5");
    reload_timezone();
    // One second later, so the per-thread cache (keyed by second) cannot serve the old zone.
    let later = accept + Duration::from_secs(1);
    let rec = TcpLogRecord {
        accept_date: later,
        ..rec
    };
    assert_eq!(
        format_tcplog(&rec),
        "10.0.1.2:33313 [06/Feb/2009:07:12:52.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0"
    );
    assert_eq!(
        framing.to_bytes(Level::Info, &header, later, "m"),
        b"<134>1 2009-02-06T07:12:52.443000-05:00 - haproxy 1 - - m\n"
    );
}
