//! `vrrp_instance` and `vrrp_script` sections: keepalived's vocabulary in the configuration
//! file's line-per-keyword form (no braces), so a keepalived.conf translates line by line.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::Sink;
use crate::model::Span;
use crate::units::parse_duration;
use crate::vrrp::{TrackBackend, VrrpInstance, VrrpScript};

pub(super) fn start_instance(sink: &mut Sink, w: &[String], span: &Span) -> VrrpInstance {
    VrrpInstance::new(span.clone(), section_name(sink, w, span))
}

pub(super) fn start_script(sink: &mut Sink, w: &[String], span: &Span) -> VrrpScript {
    VrrpScript::new(span.clone(), section_name(sink, w, span))
}

fn section_name(sink: &mut Sink, w: &[String], span: &Span) -> String {
    match w {
        [_, name] => name.clone(),
        _ => {
            sink.err(span, format!("'{}' expects exactly one name", w[0]));
            w.get(1).cloned().unwrap_or_default()
        }
    }
}

/// keepalived's durations are seconds, possibly fractional (`advert_int 0.5`); a unit
/// (`500ms`) is accepted too.
fn seconds(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("'{text}' is not a duration"));
    }
    parse_duration(text)
}

fn weight(text: &str) -> Result<i32, String> {
    match text.parse::<i32>() {
        Ok(w) if (-253..=253).contains(&w) => Ok(w),
        _ => Err(format!(
            "weight '{text}' must be an integer from -253 to 253"
        )),
    }
}

/// `weight N` at `w[at..]`, if present.
fn optional_weight(w: &[String], at: usize) -> Result<Option<i32>, String> {
    match w.get(at).map(String::as_str) {
        None => Ok(None),
        Some("weight") => match w.get(at + 1) {
            Some(v) => weight(v).map(Some),
            None => Err("'weight' expects a value".into()),
        },
        Some(other) => Err(format!("unexpected '{other}' (expected 'weight N')")),
    }
}

fn address_with_prefix(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, prefix)) => (
            ip,
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| format!("bad prefix length in '{text}'"))?,
        ),
        None => (text, 32),
    };
    let ip = ip
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("'{ip}' is not an IPv4 address (IPv6 VRRP is not supported yet)"))?;
    Ok((ip, prefix))
}

pub(super) fn instance_keyword(sink: &mut Sink, v: &mut VrrpInstance, w: &[String], span: &Span) {
    let kw = w[0].as_str();
    let one = |sink: &mut Sink| -> Option<&str> {
        match w {
            [_, value] => Some(value.as_str()),
            _ => {
                sink.err(span, format!("'{kw}' expects one value"));
                None
            }
        }
    };
    match kw {
        "interface" => {
            if let Some(name) = one(sink) {
                v.interface = name.to_string();
            }
        }
        "state" => match one(sink) {
            Some("MASTER") => v.start_as_master = true,
            Some("BACKUP") => v.start_as_master = false,
            Some(other) => sink.err(
                span,
                format!("'state' expects MASTER or BACKUP, got '{other}'"),
            ),
            None => {}
        },
        "virtual_router_id" => match one(sink).map(str::parse::<u8>) {
            Some(Ok(id)) if id >= 1 => v.vrid = id,
            Some(_) => sink.err(span, "'virtual_router_id' expects 1 to 255"),
            None => {}
        },
        "priority" => match one(sink).map(str::parse::<u8>) {
            Some(Ok(p)) if p >= 1 => v.priority = p,
            Some(_) => sink.err(span, "'priority' expects 1 to 255"),
            None => {}
        },
        "advert_int" => match one(sink).map(seconds) {
            Some(Ok(d)) if d >= Duration::from_millis(10) && d <= Duration::from_millis(40950) => {
                v.advert_int = d
            }
            Some(Ok(_)) => sink.err(span, "'advert_int' must be from 0.01 to 40.95 seconds"),
            Some(Err(e)) => sink.err(span, format!("'advert_int': {e}")),
            None => {}
        },
        "nopreempt" => v.preempt = false,
        "preempt" => v.preempt = true,
        "preempt_delay" => match one(sink).map(seconds) {
            Some(Ok(d)) => v.preempt_delay = d,
            Some(Err(e)) => sink.err(span, format!("'preempt_delay': {e}")),
            None => {}
        },
        "unicast_src_ip" => match one(sink).map(str::parse::<Ipv4Addr>) {
            Some(Ok(ip)) => v.unicast_src = Some(ip),
            Some(Err(_)) => sink.err(span, "'unicast_src_ip' expects an IPv4 address"),
            None => {}
        },
        "unicast_peer" | "virtual_ipaddress" if w.len() < 2 => {
            sink.err(span, format!("'{kw}' expects at least one address"))
        }
        "unicast_peer" => {
            for peer in &w[1..] {
                match peer.parse::<Ipv4Addr>() {
                    Ok(ip) => v.unicast_peers.push(ip),
                    Err(_) => sink.err(
                        span,
                        format!("'unicast_peer': '{peer}' is not an IPv4 address"),
                    ),
                }
            }
        }
        "virtual_ipaddress" => {
            for address in &w[1..] {
                match address_with_prefix(address) {
                    Ok(a) => v.addresses.push(a),
                    Err(e) => sink.err(span, format!("'virtual_ipaddress': {e}")),
                }
            }
        }
        "track_script" => match (w.get(1), optional_weight(w, 2)) {
            (Some(name), Ok(weight)) => v.track_scripts.push((name.clone(), weight)),
            (None, _) => sink.err(span, "'track_script' expects a vrrp_script name"),
            (_, Err(e)) => sink.err(span, format!("'track_script': {e}")),
        },
        "track_interface" => match (w.get(1), optional_weight(w, 2)) {
            (Some(name), Ok(weight)) => {
                v.track_interfaces.push((name.clone(), weight.unwrap_or(0)))
            }
            (None, _) => sink.err(span, "'track_interface' expects an interface name"),
            (_, Err(e)) => sink.err(span, format!("'track_interface': {e}")),
        },
        "track_backend" => {
            let Some(name) = w.get(1) else {
                sink.err(span, "'track_backend' expects a backend name");
                return;
            };
            let mut track = TrackBackend {
                backend: name.clone(),
                min_up: 1,
                weight: 0,
            };
            let mut i = 2;
            while i < w.len() {
                let value = w.get(i + 1);
                match (w[i].as_str(), value) {
                    ("min-up", Some(n)) => match n.parse::<u32>() {
                        Ok(n) => track.min_up = n,
                        Err(_) => sink.err(span, format!("'min-up' expects a count, got '{n}'")),
                    },
                    ("weight", Some(n)) => match weight(n) {
                        Ok(n) => track.weight = n,
                        Err(e) => sink.err(span, format!("'track_backend': {e}")),
                    },
                    (other, _) => {
                        sink.err(
                            span,
                            format!("'track_backend': unexpected '{other}' (expected 'min-up N' or 'weight N')"),
                        );
                        return;
                    }
                }
                i += 2;
            }
            v.track_backends.push(track);
        }
        "notify_master" | "notify_backup" | "notify_fault" | "notify" => {
            let Some(command) = one(sink) else { return };
            let slot = match kw {
                "notify_master" => &mut v.notify_master,
                "notify_backup" => &mut v.notify_backup,
                "notify_fault" => &mut v.notify_fault,
                _ => &mut v.notify,
            };
            *slot = Some(command.to_string());
        }
        "authentication" | "auth_type" | "auth_pass" => sink.err(
            span,
            format!("'{kw}': VRRPv3 has no authentication (RFC 5798 removed it); remove the line"),
        ),
        "garp_master_delay" | "garp_master_repeat" | "smtp_alert" | "dont_track_primary" => {
            sink.not_implemented(span, kw)
        }
        other => sink.err(
            span,
            format!("unknown keyword '{other}' in 'vrrp_instance' section"),
        ),
    }
}

pub(super) fn script_keyword(sink: &mut Sink, s: &mut VrrpScript, w: &[String], span: &Span) {
    let kw = w[0].as_str();
    let value = match w {
        [_, value] => value.as_str(),
        _ => {
            sink.err(
                span,
                format!("'{kw}' expects one value (quote a command with spaces)"),
            );
            return;
        }
    };
    let count = |sink: &mut Sink| match value.parse::<u32>() {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            sink.err(span, format!("'{kw}' expects a positive count"));
            None
        }
    };
    match kw {
        "script" => s.script = value.to_string(),
        "interval" => match seconds(value) {
            Ok(d) if !d.is_zero() => s.interval = d,
            Ok(_) => sink.err(span, "'interval' must not be zero"),
            Err(e) => sink.err(span, format!("'interval': {e}")),
        },
        "timeout" => match seconds(value) {
            Ok(d) => s.timeout = Some(d),
            Err(e) => sink.err(span, format!("'timeout': {e}")),
        },
        "weight" => match weight(value) {
            Ok(w) => s.weight = w,
            Err(e) => sink.err(span, e),
        },
        "rise" => {
            if let Some(n) = count(sink) {
                s.rise = n;
            }
        }
        "fall" => {
            if let Some(n) = count(sink) {
                s.fall = n;
            }
        }
        "user" => sink.not_implemented(span, "vrrp_script user"),
        other => sink.err(
            span,
            format!("unknown keyword '{other}' in 'vrrp_script' section"),
        ),
    }
}

/// Cross-checks once everything is read: names refer to sections that exist.
pub(super) fn validate(
    sink: &mut Sink,
    instances: &[VrrpInstance],
    scripts: &[VrrpScript],
    backends: &[&str],
) {
    for v in instances {
        let mut missing = |what: &str| {
            sink.err(
                &v.span,
                format!("vrrp_instance '{}' has no '{what}'", v.name),
            );
        };
        if v.interface.is_empty() {
            missing("interface");
        }
        if v.vrid == 0 {
            missing("virtual_router_id");
        }
        if v.addresses.is_empty() {
            missing("virtual_ipaddress");
        }
        for (name, _) in &v.track_scripts {
            if !scripts.iter().any(|s| &s.name == name) {
                sink.err(
                    &v.span,
                    format!(
                        "vrrp_instance '{}' tracks unknown vrrp_script '{name}'",
                        v.name
                    ),
                );
            }
        }
        for track in &v.track_backends {
            if !backends.contains(&track.backend.as_str()) {
                sink.err(
                    &v.span,
                    format!(
                        "vrrp_instance '{}' tracks unknown backend '{}'",
                        v.name, track.backend
                    ),
                );
            }
        }
        for other in instances {
            if !std::ptr::eq(v, other)
                && other.vrid == v.vrid
                && other.interface == v.interface
                && v.vrid != 0
            {
                sink.err(
                    &v.span,
                    format!(
                        "vrrp_instance '{}' and '{}' share virtual_router_id {} on {}",
                        v.name, other.name, v.vrid, v.interface
                    ),
                );
                break;
            }
        }
    }
    for s in scripts {
        if s.script.is_empty() {
            sink.err(&s.span, format!("vrrp_script '{}' has no 'script'", s.name));
        }
    }
}
