//! Syslog framing of one message, byte-compatible with HAProxy 2.6's log header builder.
//!
//! | format  | bytes                                                          |
//! |---------|----------------------------------------------------------------|
//! | rfc3164 | `<PRI>Mmm dd hh:mm:ss [HOST ]TAG[PID]: MSG\n`                  |
//! | rfc5424 | `<PRI>1 YYYY-MM-DDThh:mm:ss.uuuuuu+hh:mm HOST TAG PID - - MSG\n` |
//! | short   | `<LEVEL>MSG\n` (the facility is ignored, systemd style)        |
//! | raw     | `MSG\n`                                                        |
//!
//! `PRI` is `facility * 8 + level`. For rfc3164 the host is only present when a hostname is
//! configured (`log-send-hostname`), which is what HAProxy's default header does; for
//! rfc5424 a missing host is `-`. An empty tag drops the `TAG[PID]: ` part (rfc3164) or
//! prints `-` (rfc5424).
//!
//! Truncation follows HAProxy: over a socket the header plus message are cut at `max_len`
//! bytes and a `\n` is appended; on a stream (stdout/stderr) the whole line including the
//! `\n` fits in `max_len`. Trailing `\n`/NUL bytes of the message are removed first.

use std::io::Write as _;
use std::time::SystemTime;

use switchyard_config::{Facility, Level, LogFormat};

use crate::time::{broken_down, split, TimeZone};

/// HAProxy's default `len`.
pub const DEFAULT_MAX_LEN: usize = 1024;

/// `<PRI>` value: `facility * 8 + level`.
pub fn pri(facility: Facility, level: Level) -> u8 {
    (facility as u8) * 8 + level as u8
}

/// Process identity put in syslog headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Program name (`log-tag`, usually `haproxy`).
    pub tag: &'a str,
    /// `log-send-hostname`; `None` omits it (rfc3164) or prints `-` (rfc5424).
    pub hostname: Option<&'a str>,
    pub pid: u32,
}

/// How a framed message is delivered; it changes where the length limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP or unix datagram: up to `max_len` bytes of header+message, then `\n`.
    Datagram,
    /// A file descriptor (stdout/stderr): up to `max_len` bytes including the `\n`.
    Stream,
}

/// Everything needed to frame messages for one log target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub format: LogFormat,
    pub facility: Facility,
    /// Line length limit; 0 means unlimited.
    pub max_len: usize,
    pub transport: Transport,
    pub tz: TimeZone,
}

impl Framing {
    /// Replaces the contents of `out` with the framed message.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        level: Level,
        header: &Header<'_>,
        time: SystemTime,
        msg: &str,
    ) {
        out.clear();
        let mut msg = msg.as_bytes();
        while let [rest @ .., b'\n' | 0] = msg {
            msg = rest;
        }
        // Writes into a Vec cannot fail.
        let _ = self.write_header(out, level, header, time);
        out.extend_from_slice(msg);
        let limit = match (self.max_len, self.transport) {
            (0, _) => usize::MAX,
            (n, Transport::Datagram) => n,
            (n, Transport::Stream) => n - 1,
        };
        out.truncate(limit);
        out.push(b'\n');
    }

    /// Convenience wrapper returning a fresh buffer.
    pub fn to_bytes(
        &self,
        level: Level,
        header: &Header<'_>,
        time: SystemTime,
        msg: &str,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(msg.len() + 64);
        self.encode(&mut out, level, header, time, msg);
        out
    }

    fn write_header(
        &self,
        out: &mut Vec<u8>,
        level: Level,
        header: &Header<'_>,
        time: SystemTime,
    ) -> std::io::Result<()> {
        match self.format {
            LogFormat::Raw => {}
            LogFormat::Short => write!(out, "<{}>", level as u8)?,
            LogFormat::Rfc3164 => {
                let (secs, _) = split(time);
                let tm = broken_down(secs, self.tz);
                write!(
                    out,
                    "<{}>{} {:>2} {:02}:{:02}:{:02} ",
                    pri(self.facility, level),
                    tm.month_name(),
                    tm.mday,
                    tm.hour,
                    tm.min,
                    tm.sec
                )?;
                if let Some(host) = header.hostname.filter(|h| !h.is_empty()) {
                    write!(out, "{host} ")?;
                }
                if !header.tag.is_empty() {
                    write!(out, "{}[{}]: ", header.tag, header.pid)?;
                }
            }
            LogFormat::Rfc5424 => {
                let (secs, micros) = split(time);
                let tm = broken_down(secs, self.tz);
                let sign = if tm.gmtoff < 0 { '-' } else { '+' };
                let off = tm.gmtoff.unsigned_abs() / 60;
                write!(
                    out,
                    "<{}>1 {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}{}{:02}:{:02} ",
                    pri(self.facility, level),
                    tm.year,
                    tm.mon + 1,
                    tm.mday,
                    tm.hour,
                    tm.min,
                    tm.sec,
                    micros,
                    sign,
                    off / 60,
                    off % 60
                )?;
                write!(
                    out,
                    "{} {} {} - - ",
                    nil(header.hostname.unwrap_or("")),
                    nil(header.tag),
                    header.pid
                )?;
            }
        }
        Ok(())
    }
}

/// RFC 5424 NILVALUE for empty header fields.
fn nil(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2022-11-21 23:51:05.123456 UTC
    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(1_669_074_665_123_456)
    }

    fn framing(format: LogFormat, facility: Facility) -> Framing {
        Framing {
            format,
            facility,
            max_len: DEFAULT_MAX_LEN,
            transport: Transport::Datagram,
            tz: TimeZone::Utc,
        }
    }

    const HDR: Header<'static> = Header {
        tag: "haproxy",
        hostname: None,
        pid: 1234,
    };

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn pri_values() {
        assert_eq!(pri(Facility::Local2, Level::Info), 150);
        assert_eq!(pri(Facility::Local0, Level::Info), 134);
        assert_eq!(pri(Facility::Kern, Level::Emerg), 0);
        assert_eq!(pri(Facility::Local7, Level::Debug), 191);
    }

    #[test]
    fn rfc3164() {
        let f = framing(LogFormat::Rfc3164, Facility::Local0);
        assert_eq!(
            s(f.to_bytes(Level::Info, &HDR, t(), "hello world")),
            "<134>Nov 21 23:51:05 haproxy[1234]: hello world\n"
        );
        let f = framing(LogFormat::Rfc3164, Facility::Local2);
        let hdr = Header {
            hostname: Some("db-lb1"),
            ..HDR
        };
        assert_eq!(
            s(f.to_bytes(Level::Info, &hdr, t(), "x\n")),
            "<150>Nov 21 23:51:05 db-lb1 haproxy[1234]: x\n"
        );
        // Day of month is space padded.
        let early = UNIX_EPOCH + Duration::from_secs(1_667_610_245); // 2022-11-05 01:04:05
        assert_eq!(
            s(f.to_bytes(Level::Err, &HDR, early, "m")),
            "<147>Nov  5 01:04:05 haproxy[1234]: m\n"
        );
        // Empty tag: no program part at all.
        let hdr = Header { tag: "", ..HDR };
        assert_eq!(
            s(f.to_bytes(Level::Info, &hdr, early, "m")),
            "<150>Nov  5 01:04:05 m\n"
        );
    }

    #[test]
    fn rfc5424() {
        let f = framing(LogFormat::Rfc5424, Facility::Local2);
        assert_eq!(
            s(f.to_bytes(Level::Info, &HDR, t(), "hello")),
            "<150>1 2022-11-21T23:51:05.123456+00:00 - haproxy 1234 - - hello\n"
        );
        let hdr = Header {
            hostname: Some("lb"),
            tag: "",
            pid: 7,
        };
        assert_eq!(
            s(f.to_bytes(Level::Warning, &hdr, t(), "hello")),
            "<148>1 2022-11-21T23:51:05.123456+00:00 lb - 7 - - hello\n"
        );
    }

    #[test]
    fn short_and_raw() {
        let f = framing(LogFormat::Short, Facility::Local2);
        assert_eq!(s(f.to_bytes(Level::Info, &HDR, t(), "hello")), "<6>hello\n");
        assert_eq!(s(f.to_bytes(Level::Err, &HDR, t(), "hello")), "<3>hello\n");
        let f = framing(LogFormat::Raw, Facility::Local2);
        assert_eq!(
            s(f.to_bytes(Level::Info, &HDR, t(), "hello\n\n")),
            "hello\n"
        );
    }

    #[test]
    fn truncation_datagram() {
        let mut f = framing(LogFormat::Rfc3164, Facility::Local0);
        f.max_len = 80;
        let msg = "a".repeat(200);
        let out = f.to_bytes(Level::Info, &HDR, t(), &msg);
        assert_eq!(out.len(), 81);
        let header = "<134>Nov 21 23:51:05 haproxy[1234]: ";
        let expected = format!("{header}{}\n", "a".repeat(80 - header.len()));
        assert_eq!(s(out), expected);
        // Exactly at the limit: untouched.
        let msg = "b".repeat(80 - header.len());
        assert_eq!(
            s(f.to_bytes(Level::Info, &HDR, t(), &msg)),
            format!("{header}{msg}\n")
        );
        // Default length.
        let f = framing(LogFormat::Raw, Facility::Local0);
        let out = f.to_bytes(Level::Info, &HDR, t(), &"c".repeat(5000));
        assert_eq!(out.len(), DEFAULT_MAX_LEN + 1);
        assert_eq!(out.last(), Some(&b'\n'));
    }

    #[test]
    fn truncation_stream_and_unlimited() {
        let mut f = framing(LogFormat::Raw, Facility::Local0);
        f.transport = Transport::Stream;
        f.max_len = 100;
        let out = f.to_bytes(Level::Info, &HDR, t(), &"z".repeat(300));
        assert_eq!(out.len(), 100);
        assert_eq!(&out[98..], b"z\n");
        f.max_len = 0;
        assert_eq!(
            f.to_bytes(Level::Info, &HDR, t(), &"z".repeat(3000)).len(),
            3001
        );
    }
}
