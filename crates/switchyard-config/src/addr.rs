//! Address syntaxes: listeners (`bind`, `stats socket`), servers and log targets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::model::{Host, LogAddress, SocketAddress};

/// Address family forced by an `ipv4@` / `ipv6@` style prefix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

/// Splits `host:port` the way HAProxy does: `[v6]:port` with brackets, otherwise the *last*
/// colon separates the port (so `:::5432` is `::` port 5432).
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| format!("missing ']' in address '{s}'"))?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            return Ok((host, None));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("unexpected '{after}' after ']' in address '{s}'"))?;
        return Ok((host, Some(port)));
    }
    Ok(match s.rfind(':') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    })
}

/// A TCP/UDP port, 1..=65535.
pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port '{s}'"));
    }
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("port '{s}' out of range (1-65535)")),
    }
}

/// HAProxy accepts DNS-style names; anything else is almost certainly a typo.
pub(crate) fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

fn strip_family(s: &str) -> Result<(Family, &str), String> {
    if let Some(rest) = s.strip_prefix("ipv4@") {
        return Ok((Family::V4, rest));
    }
    if let Some(rest) = s.strip_prefix("ipv6@") {
        return Ok((Family::V6, rest));
    }
    if let Some(at) = s.find('@') {
        let prefix = &s[..at];
        return Err(match prefix {
            "abns" | "fd" | "sockpair" | "udp" | "udp4" | "udp6" | "quic4" | "quic6" | "tcp"
            | "tcp4" | "tcp6" | "uxst" | "uxdg" => {
                format!("address family '{prefix}@' is not supported here")
            }
            _ => format!("unknown address family '{prefix}@' in '{s}'"),
        });
    }
    Ok((Family::Any, s))
}

/// Resolves a host part for a listener or a log target: IP literal, `*`/empty wildcard, or a
/// name looked up once at parse time (HAProxy resolves these at start-up too).
fn resolve_ip(host: &str, family: Family) -> Result<IpAddr, String> {
    if host.is_empty() || host == "*" {
        return Ok(match family {
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });
    }
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => {
            if !valid_hostname(host) {
                return Err(format!("invalid address '{host}'"));
            }
            let found = (host, 0u16)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve '{host}': {e}"))?
                .map(|a| a.ip())
                .find(|ip| match family {
                    Family::Any => true,
                    Family::V4 => ip.is_ipv4(),
                    Family::V6 => ip.is_ipv6(),
                });
            found.ok_or_else(|| format!("cannot resolve '{host}'"))?
        }
    };
    match (family, ip) {
        (Family::V4, IpAddr::V6(_)) => Err(format!("'{host}' is not an IPv4 address")),
        (Family::V6, IpAddr::V4(_)) => Err(format!("'{host}' is not an IPv6 address")),
        _ => Ok(ip),
    }
}

/// Upper bound on addresses one `bind` line may expand to, so a typo like `1-65535` on a
/// comma list cannot allocate without bound.
const MAX_BIND_ADDRESSES: usize = 65_535;

/// One comma-separated element of a `bind` line (or of `listen NAME ADDR`): `/path`,
/// `unix@/path`, `[ipv4@|ipv6@]host:port` or `host:lo-hi` (expanded).
pub(crate) fn parse_bind_addresses(list: &str) -> Result<Vec<SocketAddress>, String> {
    let mut out = Vec::new();
    for item in list.split(',') {
        if item.is_empty() {
            return Err(format!("empty address in '{list}'"));
        }
        if item.starts_with('/') {
            out.push(SocketAddress::Unix(PathBuf::from(item)));
            continue;
        }
        if let Some(path) = item.strip_prefix("unix@") {
            if path.is_empty() {
                return Err("missing path after 'unix@'".to_string());
            }
            out.push(SocketAddress::Unix(PathBuf::from(path)));
            continue;
        }
        let (family, rest) = strip_family(item)?;
        let (host, port) = split_host_port(rest)?;
        let port = port.ok_or_else(|| format!("missing port in bind address '{item}'"))?;
        let ip = resolve_ip(host, family)?;
        let (lo, hi) = match port.split_once('-') {
            Some((lo, hi)) => (parse_port(lo)?, parse_port(hi)?),
            None => {
                let p = parse_port(port)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("invalid port range '{port}' (start above end)"));
        }
        for p in lo..=hi {
            if out.len() >= MAX_BIND_ADDRESSES {
                return Err(format!("too many addresses in '{list}'"));
            }
            out.push(SocketAddress::Inet(SocketAddr::new(ip, p)));
        }
    }
    Ok(out)
}

/// `stats socket` address: like a single bind address but without port ranges.
pub(crate) fn parse_socket_address(s: &str) -> Result<SocketAddress, String> {
    if s.contains(',') {
        return Err(format!("only one address is allowed, got '{s}'"));
    }
    let mut all = parse_bind_addresses(s)?;
    if all.len() != 1 {
        return Err(format!("port ranges are not allowed here: '{s}'"));
    }
    all.pop().ok_or_else(|| format!("invalid address '{s}'"))
}

/// Server address `[ipv4@|ipv6@]host[:port]`; hostnames are kept unresolved.
pub(crate) fn parse_server_address(s: &str) -> Result<(Host, Option<u16>), String> {
    if s.starts_with('/') || s.starts_with("unix@") {
        return Err(format!("unix socket servers are not supported yet: '{s}'"));
    }
    let (family, rest) = strip_family(s)?;
    if rest.is_empty() {
        return Err("missing server address".to_string());
    }
    let (host, port) = split_host_port(rest)?;
    let (host, port) = if !rest.starts_with('[')
        && host.parse::<IpAddr>().is_err()
        && rest.parse::<Ipv6Addr>().is_ok()
    {
        // `::1` or `fe80::1`: the last-colon split would cut the address itself; HAProxy
        // users write these without a port, so take the whole thing as the address.
        (rest, None)
    } else {
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.starts_with('+') || p.starts_with('-') => {
            return Err(format!(
                "port offsets ('{p}') are not supported yet; give an absolute port"
            ))
        }
        Some(p) => Some(parse_port(p)?),
    };
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => {
            match (family, ip) {
                (Family::V4, IpAddr::V6(_)) => {
                    return Err(format!("'{host}' is not an IPv4 address"))
                }
                (Family::V6, IpAddr::V4(_)) => {
                    return Err(format!("'{host}' is not an IPv6 address"))
                }
                _ => {}
            }
            Host::Ip(ip)
        }
        Err(_) if valid_hostname(host) => Host::Name(host.to_string()),
        Err(_) => return Err(format!("invalid server address '{s}'")),
    };
    Ok((host, port))
}

/// Check address for `addr`: an IP literal or a hostname.
pub(crate) fn parse_host(s: &str) -> Result<Host, String> {
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(Host::Ip(ip)),
        Err(_) if valid_hostname(s) => Ok(Host::Name(s.to_string())),
        Err(_) => Err(format!("invalid address '{s}'")),
    }
}

/// Log target: `stdout`, `stderr`, `fd@1`, `/dev/log`, `unix@path`, `[udp@|udp4@|udp6@|
/// ipv4@|ipv6@]host[:port]` (port 514 when omitted).
pub(crate) fn parse_log_address(s: &str) -> Result<LogAddress, String> {
    match s {
        "stdout" | "fd@1" => return Ok(LogAddress::Stdout),
        "stderr" | "fd@2" => return Ok(LogAddress::Stderr),
        _ => {}
    }
    if s.starts_with('/') {
        return Ok(LogAddress::Unix(PathBuf::from(s)));
    }
    if let Some(path) = s.strip_prefix("unix@") {
        if path.is_empty() {
            return Err("missing path after 'unix@'".to_string());
        }
        return Ok(LogAddress::Unix(PathBuf::from(path)));
    }
    let (family, rest) = if let Some(r) = s.strip_prefix("udp@") {
        (Family::Any, r)
    } else if let Some(r) = s.strip_prefix("udp4@") {
        (Family::V4, r)
    } else if let Some(r) = s.strip_prefix("udp6@") {
        (Family::V6, r)
    } else if let Some(at) = s.find('@') {
        let prefix = &s[..at];
        if matches!(prefix, "ipv4" | "ipv6") {
            strip_family(s)?
        } else if matches!(prefix, "tcp" | "tcp4" | "tcp6" | "ring" | "fd") {
            return Err(format!(
                "log target '{s}' is not implemented yet (use UDP, a unix socket, stdout or stderr)"
            ));
        } else {
            return Err(format!(
                "unknown address family '{prefix}@' in log target '{s}'"
            ));
        }
    } else {
        (Family::Any, s)
    };
    let (host, port) = split_host_port(rest)?;
    let (host, port) = if !rest.starts_with('[')
        && host.parse::<IpAddr>().is_err()
        && rest.parse::<Ipv6Addr>().is_ok()
    {
        (rest, None)
    } else {
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("missing host in log target '{s}'"));
    }
    let port = match port {
        None | Some("") => 514,
        Some(p) => parse_port(p)?,
    };
    let ip = resolve_ip(host, family)?;
    Ok(LogAddress::Udp(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(s: &str) -> SocketAddress {
        SocketAddress::Inet(s.parse().unwrap())
    }

    #[test]
    fn bind_forms() {
        assert_eq!(
            parse_bind_addresses("*:5432").unwrap(),
            [inet("0.0.0.0:5432")]
        );
        assert_eq!(
            parse_bind_addresses(":5432").unwrap(),
            [inet("0.0.0.0:5432")]
        );
        assert_eq!(
            parse_bind_addresses("0.0.0.0:5432").unwrap(),
            [inet("0.0.0.0:5432")]
        );
        assert_eq!(
            parse_bind_addresses("[::]:5432").unwrap(),
            [inet("[::]:5432")]
        );
        assert_eq!(
            parse_bind_addresses(":::5432").unwrap(),
            [inet("[::]:5432")]
        );
        assert_eq!(
            parse_bind_addresses("ipv6@:5432").unwrap(),
            [inet("[::]:5432")]
        );
        assert_eq!(
            parse_bind_addresses("ipv4@*:9999").unwrap(),
            [inet("0.0.0.0:9999")]
        );
        assert_eq!(
            parse_bind_addresses("10.0.0.1:5000-5002,[::1]:6000").unwrap(),
            [
                inet("10.0.0.1:5000"),
                inet("10.0.0.1:5001"),
                inet("10.0.0.1:5002"),
                inet("[::1]:6000")
            ]
        );
        assert_eq!(
            parse_bind_addresses("/run/sock").unwrap(),
            [SocketAddress::Unix("/run/sock".into())]
        );
        assert_eq!(
            parse_bind_addresses("unix@/run/sock").unwrap(),
            [SocketAddress::Unix("/run/sock".into())]
        );
    }

    #[test]
    fn bind_errors() {
        for bad in [
            "",
            "*",
            "10.0.0.1",
            ":0",
            ":65536",
            ":5002-5000",
            "ipv4@[::]:5",
            "ipv6@1.2.3.4:5",
            "abns@x",
            "bogus@x:1",
            "a,,b",
            ":x",
            "[::1:5",
            "1.2.3.4:5,",
            "bad host!:5",
        ] {
            assert!(parse_bind_addresses(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(
            parse_socket_address("ipv4@127.0.0.1:9999").unwrap(),
            inet("127.0.0.1:9999")
        );
        assert_eq!(
            parse_socket_address("ipv6@:::9999").unwrap(),
            inet("[::]:9999")
        );
        assert_eq!(
            parse_socket_address("127.0.0.1:9999").unwrap(),
            inet("127.0.0.1:9999")
        );
        assert_eq!(
            parse_socket_address("/var/run/haproxy.sock").unwrap(),
            SocketAddress::Unix("/var/run/haproxy.sock".into())
        );
        assert!(parse_socket_address(":1-2").is_err());
    }

    #[test]
    fn server_addresses() {
        let ip = |s: &str| Host::Ip(s.parse().unwrap());
        assert_eq!(
            parse_server_address("10.0.0.1:5432").unwrap(),
            (ip("10.0.0.1"), Some(5432))
        );
        assert_eq!(
            parse_server_address("10.0.0.1").unwrap(),
            (ip("10.0.0.1"), None)
        );
        assert_eq!(
            parse_server_address("10.0.0.1:").unwrap(),
            (ip("10.0.0.1"), None)
        );
        assert_eq!(
            parse_server_address("[::1]:5432").unwrap(),
            (ip("::1"), Some(5432))
        );
        assert_eq!(parse_server_address("::1").unwrap(), (ip("::1"), None));
        assert_eq!(
            parse_server_address("2001:db8::1:5432").unwrap(),
            (ip("2001:db8::1"), Some(5432))
        );
        assert_eq!(
            parse_server_address("db-1.example.com:26257").unwrap(),
            (Host::Name("db-1.example.com".into()), Some(26257))
        );
        assert_eq!(
            parse_server_address("ipv4@10.0.0.1:1").unwrap(),
            (ip("10.0.0.1"), Some(1))
        );
        for bad in [
            "",
            "/sock",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "h:+1",
            "bad!:1",
            "ipv6@10.0.0.1:1",
        ] {
            assert!(parse_server_address(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn log_addresses() {
        let udp = |s: &str| LogAddress::Udp(s.parse().unwrap());
        assert_eq!(
            parse_log_address("127.0.0.1").unwrap(),
            udp("127.0.0.1:514")
        );
        assert_eq!(
            parse_log_address("127.0.0.1:1514").unwrap(),
            udp("127.0.0.1:1514")
        );
        assert_eq!(
            parse_log_address("udp@10.1.1.1:5140").unwrap(),
            udp("10.1.1.1:5140")
        );
        assert_eq!(parse_log_address("[::1]:515").unwrap(), udp("[::1]:515"));
        assert_eq!(parse_log_address("::1").unwrap(), udp("[::1]:514"));
        assert_eq!(
            parse_log_address("/dev/log").unwrap(),
            LogAddress::Unix("/dev/log".into())
        );
        assert_eq!(parse_log_address("stdout").unwrap(), LogAddress::Stdout);
        assert_eq!(parse_log_address("stderr").unwrap(), LogAddress::Stderr);
        assert!(parse_log_address("tcp@1.2.3.4:514").is_err());
        assert!(parse_log_address("ring@buf").is_err());
        assert!(parse_log_address("x@y").is_err());
        assert!(parse_log_address(":514").is_err());
    }
}
