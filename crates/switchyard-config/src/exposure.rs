//! Warnings for configurations that hand control of the balancer to the network: HAProxy
//! accepts them, so Switchyard does too, but says so at `-c` time with the line to change.
//!
//! * `stats socket ipv4@ADDR level admin` (or `ipv6@`) on an address other hosts can reach:
//!   anyone who can connect may disable servers, change weights and addresses, or shut
//!   sessions down; the Runtime API has no authentication of its own.
//! * `stats admin if TRUE` on a stats page without `stats auth`, listening beyond loopback:
//!   the same powers from a browser, for anyone.

use crate::diagnostic::{Diagnostic, Severity};
use crate::model::{Config, SocketAddress, StatsAdmin};

/// The exposure warnings of `config`, in configuration order.
pub(crate) fn warnings(config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for socket in &config.global.stats_sockets {
        let SocketAddress::Inet(addr) = &socket.address else {
            continue;
        };
        if socket.level.as_deref() == Some("admin") && !addr.ip().to_canonical().is_loopback() {
            out.push(Diagnostic {
                severity: Severity::Warning,
                span: socket.span.clone(),
                message: format!(
                    "'stats socket' on {addr} with 'level admin' is reachable from other hosts, \
                     and the Runtime API has no authentication: anyone who can connect may \
                     disable servers or change them; bind it to 127.0.0.1 or a unix socket, or \
                     use 'level operator' or 'level user'"
                ),
            });
        }
    }
    for proxy in &config.proxies {
        let stats = &proxy.stats;
        if !stats.enabled || stats.admin != Some(StatsAdmin::Always) || !stats.auths.is_empty() {
            continue;
        }
        let public = proxy.binds.iter().flat_map(|b| &b.addresses).find(
            |a| matches!(a, SocketAddress::Inet(addr) if !addr.ip().to_canonical().is_loopback()),
        );
        let (Some(SocketAddress::Inet(addr)), Some(span)) = (public, stats.span.as_ref()) else {
            continue;
        };
        out.push(Diagnostic {
            severity: Severity::Warning,
            span: span.clone(),
            message: format!(
                "proxy '{}': 'stats admin if TRUE' without 'stats auth' on {addr} lets anyone \
                 who reaches the page change servers; add 'stats auth USER:PASSWORD' or use \
                 'stats admin if LOCALHOST'",
                proxy.name
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{parse_sources, Source};

    fn warnings(text: &str) -> Vec<String> {
        let parsed = parse_sources(&[Source {
            name: "t.cfg".into(),
            text: text.into(),
        }])
        .expect("valid configuration");
        parsed.warnings.iter().map(|d| d.to_string()).collect()
    }

    const TAIL: &str = "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    \
                        timeout server 1s\nlisten l\n    bind 127.0.0.1:7000\n    server s 127.0.0.1:7001\n";

    #[test]
    fn a_public_admin_socket_is_named_with_its_line() {
        for addr in ["ipv4@0.0.0.0:9999", "ipv4@10.1.2.3:9999", "ipv6@[::]:9999"] {
            let w = warnings(&format!(
                "global\n    stats socket {addr} level admin\n{TAIL}"
            ));
            assert_eq!(w.len(), 1, "{addr}: {w:?}");
            assert!(
                w[0].starts_with("t.cfg:2: warning: 'stats socket' on "),
                "{}",
                w[0]
            );
            assert!(w[0].contains("level admin"), "{}", w[0]);
        }
    }

    #[test]
    fn loopback_unix_and_lower_levels_are_quiet() {
        for line in [
            "stats socket ipv4@127.0.0.1:9999 level admin",
            "stats socket ipv6@[::1]:9999 level admin",
            "stats socket /tmp/sy.sock level admin",
            "stats socket ipv4@0.0.0.0:9999 level operator",
            "stats socket ipv4@0.0.0.0:9999 level user",
            "stats socket ipv4@0.0.0.0:9999",
        ] {
            let w = warnings(&format!("global\n    {line}\n{TAIL}"));
            assert!(w.is_empty(), "{line}: {w:?}");
        }
    }

    #[test]
    fn a_public_admin_page_without_auth_is_named() {
        let page = |bind: &str, extra: &str| {
            warnings(&format!(
                "{TAIL}listen stats\n    mode http\n    bind {bind}\n    stats enable\n    \
                 stats admin if TRUE\n{extra}"
            ))
        };
        let w = page("0.0.0.0:8404", "");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("t.cfg:12: warning: proxy 'stats'"),
            "{}",
            w[0]
        );
        assert!(page("127.0.0.1:8404", "").is_empty());
        assert!(page("0.0.0.0:8404", "    stats auth admin:pw\n").is_empty());
    }
}
