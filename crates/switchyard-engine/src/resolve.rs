//! Servers given by name: their address follows DNS at runtime.
//!
//! At start (and on `add server`) the name is resolved once by the system resolver, like
//! HAProxy's default `init-addr libc`. Afterwards a task per server re-resolves it: with
//! the server's `resolvers` section every `timeout resolve`, or — for servers added at
//! runtime without one (a Switchyard extension) — with the system resolver every
//! [`SYSTEM_INTERVAL`]. When the current address is no longer among the answers, new
//! sessions go to the first answer; established ones stay where they are. A failing
//! resolution keeps the last known address, so a DNS outage never takes servers away.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use switchyard_config::{self as config, Config, Host, Level};
use switchyard_dns::{Family, Nameservers, Resolver};
use tokio::sync::watch;

use crate::health::{emit, still_member};
use crate::state::{Backend, Server};

/// How often a dynamic server's name is re-resolved with the system resolver.
pub const SYSTEM_INTERVAL: Duration = Duration::from_secs(10);

/// A resolver and how often it is asked.
#[derive(Debug, Clone)]
pub struct Section {
    pub resolver: Arc<Resolver>,
    pub every: Duration,
}

/// The `resolvers` sections of a configuration, by name.
pub type Sections = HashMap<String, Section>;

pub fn sections(config: &Config) -> anyhow::Result<Sections> {
    let mut sections = HashMap::new();
    for r in &config.resolvers {
        let mut servers: Vec<SocketAddr> = r.nameservers.iter().map(|(_, a)| *a).collect();
        if r.parse_resolv_conf {
            let text = std::fs::read_to_string("/etc/resolv.conf")
                .map_err(|e| anyhow!("{}: parse-resolv-conf: /etc/resolv.conf: {e}", r.span))?;
            servers.extend(resolv_conf_nameservers(&text));
        }
        if servers.is_empty() {
            bail!("{}: resolvers '{}' has no nameserver", r.span, r.name);
        }
        let resolver = Resolver::Dns(Nameservers {
            servers,
            timeout: r.timeout_retry,
            retries: r.resolve_retries,
        });
        sections.insert(
            r.name.clone(),
            Section {
                resolver: Arc::new(resolver),
                every: r.timeout_resolve,
            },
        );
    }
    Ok(sections)
}

fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next()?.parse::<IpAddr>().ok())
                .flatten()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// How one server keeps its address current.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub fqdn: String,
    pub resolver: Arc<Resolver>,
    pub every: Duration,
    pub prefer: Option<Family>,
}

/// The resolution a server needs: none for an IP address, or a name on a configuration
/// line without `resolvers` (resolved once, as HAProxy does).
pub fn resolution_for(
    server: &config::Server,
    dynamic: bool,
    sections: &Sections,
) -> anyhow::Result<Option<Resolution>> {
    let Host::Name(fqdn) = &server.host else {
        return Ok(None);
    };
    let prefer = server.resolve_prefer.map(|family| match family {
        config::IpFamily::Ipv4 => Family::Ipv4,
        config::IpFamily::Ipv6 => Family::Ipv6,
    });
    let section = match &server.resolvers {
        Some(name) => sections
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("unknown resolvers section '{name}'"))?,
        None if dynamic => Section {
            resolver: Arc::new(Resolver::System),
            every: SYSTEM_INTERVAL,
        },
        None => return Ok(None),
    };
    Ok(Some(Resolution {
        fqdn: fqdn.clone(),
        resolver: section.resolver,
        every: section.every,
        prefer,
    }))
}

/// Re-resolves the server's name until the engine stops or the server is removed.
pub(crate) fn spawn_resolution(
    backend: &Arc<Backend>,
    server: &Arc<Server>,
    stop: &watch::Sender<bool>,
) {
    if server.resolution.is_none() {
        return;
    }
    tokio::spawn(resolve_loop(
        Arc::clone(backend),
        Arc::clone(server),
        stop.subscribe(),
    ));
}

async fn resolve_loop(backend: Arc<Backend>, server: Arc<Server>, mut stop: watch::Receiver<bool>) {
    let Some(resolution) = server.resolution.clone() else {
        return;
    };
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(resolution.every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        if !still_member(&backend, &server) {
            return;
        }
        match resolution
            .resolver
            .resolve(&resolution.fqdn, resolution.prefer)
            .await
        {
            Ok(addresses) => {
                if failing {
                    failing = false;
                    emit(
                        &backend,
                        Level::Notice,
                        &format!(
                            "{}/{}: '{}' resolves again.",
                            backend.name, server.name, resolution.fqdn
                        ),
                    );
                }
                apply(&backend, &server, &addresses);
            }
            Err(error) => {
                if !failing {
                    failing = true;
                    emit(
                        &backend,
                        Level::Warning,
                        &format!(
                            "{}/{}: {error}; keeping {}.",
                            backend.name,
                            server.name,
                            server.addr().ip()
                        ),
                    );
                }
            }
        }
    }
}

fn apply(backend: &Backend, server: &Server, addresses: &[IpAddr]) {
    let current = server.addr();
    if addresses.contains(&current.ip()) {
        return;
    }
    let Some(new) = addresses.first() else {
        return;
    };
    server.move_to(SocketAddr::new(*new, current.port()));
    backend.bump_generation();
    backend.changes.notify_one();
    // HAProxy's wording, so log watchers keep working.
    emit(
        backend,
        Level::Notice,
        &format!(
            "{}/{} changed its IP from {} to {} by DNS resolution.",
            backend.name,
            server.name,
            current.ip(),
            new
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_read_and_garbage_skipped() {
        let text = "# comment\nsearch example\nnameserver 10.0.0.2\nnameserver fd00::1\n\
                    nameserver not-an-ip\noptions ndots:2\n";
        assert_eq!(
            resolv_conf_nameservers(text),
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[fd00::1]:53".parse().unwrap()
            ]
        );
    }
}
