//! `resolvers` sections: the nameservers servers' names are resolved with at runtime.

use std::net::{IpAddr, SocketAddr};

use super::Sink;
use crate::addr;
use crate::model::{Resolvers, Span};
use crate::units::parse_duration;

/// Starts a `resolvers NAME` section.
pub(super) fn start(sink: &mut Sink, w: &[String], span: &Span) -> Resolvers {
    let name = match w {
        [_, name] => name.clone(),
        [_] => {
            sink.err(span, "'resolvers' expects a name");
            String::new()
        }
        _ => {
            sink.err(span, "'resolvers' expects exactly one name");
            w[1].clone()
        }
    };
    Resolvers::new(span.clone(), name)
}

/// One line inside a `resolvers` section.
pub(super) fn keyword(sink: &mut Sink, r: &mut Resolvers, w: &[String], span: &Span) {
    let arg = |i: usize| w.get(i).map(String::as_str);
    match w[0].as_str() {
        "nameserver" => match (arg(1), arg(2), w.len()) {
            (Some(id), Some(address), 3) => match nameserver_address(address) {
                Ok(addr) => r.nameservers.push((id.to_string(), addr)),
                Err(e) => sink.err(span, format!("'nameserver {id}': {e}")),
            },
            _ => sink.err(span, "'nameserver' expects <name> <address>[:<port>]"),
        },
        "parse-resolv-conf" => r.parse_resolv_conf = true,
        "resolve_retries" => match arg(1).map(str::parse::<u32>) {
            Some(Ok(n)) if n > 0 && w.len() == 2 => r.resolve_retries = n,
            _ => sink.err(span, "'resolve_retries' expects a positive integer"),
        },
        "timeout" => match (arg(1), arg(2).map(parse_duration)) {
            (Some("resolve"), Some(Ok(d))) => r.timeout_resolve = d,
            (Some("retry"), Some(Ok(d))) => r.timeout_retry = d,
            (Some(kind @ ("resolve" | "retry")), Some(Err(e))) => {
                sink.err(span, format!("'timeout {kind}': {e}"))
            }
            _ => sink.err(span, "'timeout' expects 'resolve' or 'retry' and a duration"),
        },
        "hold" => match (arg(1), arg(2).map(parse_duration)) {
            (Some("valid"), Some(Ok(d))) => r.hold_valid = d,
            // What HAProxy does with failing names; Switchyard keeps the last good address
            // until a new one is known, whatever the failure.
            (Some("nx" | "other" | "refused" | "timeout" | "obsolete"), Some(Ok(_))) => {}
            (Some(_), Some(Err(e))) => sink.err(span, format!("'hold': {e}")),
            _ => sink.err(
                span,
                "'hold' expects one of 'valid', 'nx', 'other', 'refused', 'timeout', 'obsolete' and a duration",
            ),
        },
        "accepted_payload_size" => match arg(1).map(str::parse::<u32>) {
            Some(Ok(n)) if (512..=65535).contains(&n) => {}
            _ => sink.err(span, "'accepted_payload_size' expects a size from 512 to 65535"),
        },
        other => sink.err(
            span,
            format!("unknown keyword '{other}' in 'resolvers' section"),
        ),
    }
}

/// `[udp@]IP[:PORT]`, port 53 when omitted. Nameservers must be IP addresses: resolving
/// the resolver by name would need a resolver.
fn nameserver_address(text: &str) -> Result<SocketAddr, String> {
    let bare = text
        .strip_prefix("udp@")
        .or_else(|| text.strip_prefix("udp4@"))
        .or_else(|| text.strip_prefix("udp6@"))
        .unwrap_or(text);
    if let Some(rest) = bare.strip_prefix("tcp@") {
        return Err(format!("DNS over TCP is not supported: 'tcp@{rest}'"));
    }
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    let (host, port) = addr::split_host_port(bare)?;
    let ip = host
        .parse::<IpAddr>()
        .map_err(|_| format!("'{host}' is not an IP address"))?;
    let port = match port {
        None | Some("") => 53,
        Some(p) => addr::parse_port(p)?,
    };
    Ok(SocketAddr::new(ip, port))
}
