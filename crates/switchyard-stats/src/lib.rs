//! HAProxy's stats page over HTTP, and its Prometheus exporter.
//!
//! A `frontend`/`listen` in `mode http` with `stats enable` (or any `stats` setting) and/or
//! `http-request use-service prometheus-exporter if { path /metrics }`, and nothing to route
//! to, is served here instead of by the TCP engine. Under the configured `stats uri`:
//!
//! | request | answer |
//! | --- | --- |
//! | `GET <uri>` | the page (one HTML file, inline CSS and JS, no external asset) |
//! | `GET <uri>;csv` | `show stat` CSV, byte for byte what the stats socket prints |
//! | `GET <uri>;json` / `;typed` | `show stat json` / `show stat typed` |
//! | `GET <uri>;info` / `;info;json` | `show info` / `show info json` |
//! | `GET <uri>;data` | the compact JSON the page polls (see [`data`]) |
//! | `;up`, `;no-maint` | only servers that are up / not in maintenance |
//! | `;norefresh` | a page that does not update itself |
//! | `POST <uri>` | an admin action (HAProxy's form: `s=SERVER&action=ACTION&b=#IID`) |
//! | `GET <prometheus path>` | Prometheus text exposition (see [`prometheus`]) |
//!
//! The server is generic over [`Source`], which the binary implements over the running
//! engine: snapshots for reading, and the Runtime API's executor for admin actions, so a
//! change made from the page is validated, answered and persisted exactly as the same
//! command typed on the stats socket.

use std::future::Future;
use std::time::Duration;

use switchyard_api::command::Command;
use switchyard_api::model::{Info, Stats};

pub mod admin;
pub mod data;
mod http;
pub mod prometheus;
pub mod request;

pub use http::{bind, serve};

/// What the stats server reads and acts on.
pub trait Source: Send + Sync + 'static {
    /// Every proxy, as `show stat` sees them.
    fn stats(&self) -> Stats;
    /// The process, as `show info` sees it.
    fn info(&self) -> Info;
    /// Runs a Runtime API command with the `admin` level and returns the CLI's answer (empty
    /// when a `set server` succeeded, HAProxy's error message otherwise).
    fn execute(&self, command: Command) -> impl Future<Output = String> + Send;
}

/// HAProxy's default `stats realm`.
pub const DEFAULT_REALM: &str = "HAProxy Statistics";

/// How often the page updates itself when `stats refresh` is not given.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// One stats proxy's settings, resolved from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The proxy's name, for diagnostics.
    pub proxy: String,
    /// The stats page, when `stats` is enabled.
    pub page: Option<Page>,
    /// The exact path the Prometheus exporter answers on.
    pub prometheus_uri: Option<String>,
    /// How long a client may take to send a request's headers: `timeout http-request`, else
    /// `timeout client` up to [`DEFAULT_HEADER_TIMEOUT`] (database configurations often set
    /// `timeout client` in minutes, far too long for a page's headers). Cuts slowloris
    /// clients.
    pub header_timeout: Duration,
}

/// The longest header timeout of a stats proxy without `timeout http-request`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The stats page's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Page {
    /// `stats uri`: a prefix of the request target (path and query).
    pub uri: String,
    /// `stats refresh`; zero: the page does not update itself.
    pub refresh: Duration,
    /// `stats realm`.
    pub realm: String,
    /// `stats auth` users and passwords; empty: no authentication.
    pub auths: Vec<(String, String)>,
    /// `stats hide-version`.
    pub hide_version: bool,
    /// `stats admin`.
    pub admin: Admin,
}

impl std::fmt::Debug for Page {
    // Passwords never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("uri", &self.uri)
            .field("refresh", &self.refresh)
            .field("realm", &self.realm)
            .field(
                "users",
                &self
                    .auths
                    .iter()
                    .map(|(u, _)| u.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("hide_version", &self.hide_version)
            .field("admin", &self.admin)
            .finish()
    }
}

/// Who may run admin actions from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// No `stats admin` (or a condition Switchyard cannot evaluate).
    Never,
    /// `stats admin if TRUE`.
    Always,
    /// `stats admin if LOCALHOST`: clients on a loopback address.
    Localhost,
}

impl Admin {
    /// Whether a client at `peer` may run admin actions.
    pub fn allows(self, peer: std::net::IpAddr) -> bool {
        match self {
            Admin::Never => false,
            Admin::Always => true,
            // A v4-mapped address (`::ffff:127.0.0.1`) on a dual-stack socket is loopback too.
            Admin::Localhost => peer.to_canonical().is_loopback(),
        }
    }
}

impl Settings {
    /// The settings of a proxy for which [`switchyard_config::Proxy::is_stats_only`] holds.
    pub fn from_proxy(proxy: &switchyard_config::Proxy) -> Result<Settings, String> {
        let stats = &proxy.stats;
        let page = if stats.enabled {
            let mut auths = Vec::with_capacity(stats.auths.len());
            for auth in &stats.auths {
                let password = auth.password.resolve().map_err(|e| {
                    format!(
                        "proxy '{}': cannot read the password of stats user '{}': {e}",
                        proxy.name, auth.user
                    )
                })?;
                auths.push((auth.user.clone(), password));
            }
            Some(Page {
                uri: stats.uri.clone(),
                refresh: stats.refresh.unwrap_or(DEFAULT_REFRESH),
                realm: stats
                    .realm
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REALM.to_string()),
                auths,
                hide_version: stats.hide_version,
                admin: match stats.admin {
                    None => Admin::Never,
                    Some(switchyard_config::StatsAdmin::Always) => Admin::Always,
                    Some(switchyard_config::StatsAdmin::Localhost) => Admin::Localhost,
                },
            })
        } else {
            None
        };
        Ok(Settings {
            proxy: proxy.name.clone(),
            page,
            prometheus_uri: stats.prometheus_uri.clone(),
            // A zero timeout would close every connection at once: taken as unset.
            header_timeout: proxy
                .timeouts
                .http_request
                .filter(|t| !t.is_zero())
                .unwrap_or_else(|| {
                    proxy
                        .timeouts
                        .client
                        .filter(|t| !t.is_zero())
                        .map_or(DEFAULT_HEADER_TIMEOUT, |c| c.min(DEFAULT_HEADER_TIMEOUT))
                }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_admin_accepts_loopback_only() {
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let v6: std::net::IpAddr = "::1".parse().unwrap();
        let remote: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        assert!(Admin::Localhost.allows(local));
        assert!(Admin::Localhost.allows(mapped));
        assert!(Admin::Localhost.allows(v6));
        assert!(!Admin::Localhost.allows(remote));
        assert!(Admin::Always.allows(remote));
        assert!(!Admin::Never.allows(local));
    }

    #[test]
    fn header_timeout_follows_http_request_then_client_capped() {
        let timeout = |timeouts: &str| {
            let text = format!(
                "listen stats\n    mode http\n    bind 127.0.0.1:8404\n    stats enable\n{timeouts}"
            );
            let parsed = switchyard_config::parse_sources(&[switchyard_config::Source {
                name: "t.cfg".into(),
                text,
            }])
            .expect("valid configuration");
            Settings::from_proxy(&parsed.config.proxies[0])
                .expect("settings")
                .header_timeout
        };
        let secs = Duration::from_secs;
        assert_eq!(
            timeout("    timeout http-request 2s\n    timeout client 1m\n"),
            secs(2)
        );
        assert_eq!(timeout("    timeout client 3s\n"), secs(3));
        assert_eq!(timeout("    timeout client 30m\n"), DEFAULT_HEADER_TIMEOUT);
        assert_eq!(timeout(""), DEFAULT_HEADER_TIMEOUT);
    }

    #[test]
    fn page_debug_hides_passwords() {
        let page = Page {
            uri: "/s".into(),
            refresh: DEFAULT_REFRESH,
            realm: DEFAULT_REALM.into(),
            auths: vec![("admin".into(), "hunter2".into())],
            hide_version: false,
            admin: Admin::Never,
        };
        let shown = format!("{page:?}");
        assert!(shown.contains("admin"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
