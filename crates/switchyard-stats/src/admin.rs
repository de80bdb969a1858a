//! Admin actions from the page: HAProxy's stats form (`b=#IID&s=SERVER&action=ACTION`, `s`
//! repeated for several servers) turned into the Runtime API command an operator would type,
//! so the executor validates, answers and persists it exactly as on the stats socket.
//!
//! Actions (HAProxy's names, plus `weight`, a Switchyard extension taking `w=N` or `w=N%`):
//!
//! | action | command |
//! | --- | --- |
//! | `ready`, `drain`, `maint` | `set server B/S state ready\|drain\|maint` |
//! | `enable`, `disable` (HAProxy ≤ 1.8 names) | `set server B/S state ready\|maint` |
//! | `ehlth`, `dhlth` | `enable\|disable health B/S` |
//! | `hrunn`, `hnolb`, `hdown` | `set server B/S health up\|stopping\|down` |
//! | `eagent`, `dagent` | `enable\|disable agent B/S` |
//! | `arunn`, `adown` | `set server B/S agent up\|down` |
//! | `shutdown` | `shutdown sessions server B/S` |
//! | `weight` + `w=N[%]` | `set server B/S weight N[%]` |

use serde_json::json;
use switchyard_api::model::Stats;

/// One action of HAProxy's stats form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ready,
    Drain,
    Maint,
    EnableHealth,
    DisableHealth,
    HealthUp,
    HealthStopping,
    HealthDown,
    EnableAgent,
    DisableAgent,
    AgentUp,
    AgentDown,
    Shutdown,
    Weight,
}

impl Action {
    /// The action named in the form's `action` field.
    pub fn from_name(name: &str) -> Option<Action> {
        Some(match name {
            "ready" | "enable" => Action::Ready,
            "drain" => Action::Drain,
            "maint" | "disable" => Action::Maint,
            "ehlth" => Action::EnableHealth,
            "dhlth" => Action::DisableHealth,
            "hrunn" => Action::HealthUp,
            "hnolb" => Action::HealthStopping,
            "hdown" => Action::HealthDown,
            "eagent" => Action::EnableAgent,
            "dagent" => Action::DisableAgent,
            "arunn" => Action::AgentUp,
            "adown" => Action::AgentDown,
            "shutdown" => Action::Shutdown,
            "weight" => Action::Weight,
            _ => return None,
        })
    }

    /// The Runtime API command for one server (`weight` is only read by [`Action::Weight`]).
    pub fn command(self, backend: &str, server: &str, weight: &str) -> String {
        let target = format!("{backend}/{server}");
        match self {
            Action::Ready => format!("set server {target} state ready"),
            Action::Drain => format!("set server {target} state drain"),
            Action::Maint => format!("set server {target} state maint"),
            Action::EnableHealth => format!("enable health {target}"),
            Action::DisableHealth => format!("disable health {target}"),
            Action::HealthUp => format!("set server {target} health up"),
            Action::HealthStopping => format!("set server {target} health stopping"),
            Action::HealthDown => format!("set server {target} health down"),
            Action::EnableAgent => format!("enable agent {target}"),
            Action::DisableAgent => format!("disable agent {target}"),
            Action::AgentUp => format!("set server {target} agent up"),
            Action::AgentDown => format!("set server {target} agent down"),
            Action::Shutdown => format!("shutdown sessions server {target}"),
            Action::Weight => format!("set server {target} weight {weight}"),
        }
    }
}

/// Which backend the form names: `b=#IID` (what HAProxy's page sends) or `b=NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendRef {
    Id(u32),
    Name(String),
}

/// A parsed admin form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub backend: BackendRef,
    pub servers: Vec<String>,
    pub action: Action,
    /// `w`, for [`Action::Weight`].
    pub weight: String,
}

/// At most this many servers per form: a form is one click, not a bulk API.
pub const MAX_SERVERS: usize = 1000;

/// Parses a urlencoded form body. Every name must be a valid HAProxy name (letters, digits,
/// `-_.:`), so what reaches the command parser cannot smuggle extra words or commands.
pub fn parse_form(body: &str) -> Result<Request, String> {
    let mut backend = None;
    let mut servers = Vec::new();
    let mut action = None;
    let mut weight = String::new();
    for (key, value) in crate::request::parse_pairs(body)? {
        let value = value.unwrap_or_default();
        match key.as_str() {
            "b" => {
                backend = Some(match value.strip_prefix('#') {
                    Some(id) => BackendRef::Id(
                        id.parse()
                            .map_err(|_| format!("invalid backend id '{id}'"))?,
                    ),
                    None if valid_name(&value) => BackendRef::Name(value),
                    None => return Err(format!("invalid backend name '{value}'")),
                })
            }
            "s" => {
                if !valid_name(&value) {
                    return Err(format!("invalid server name '{value}'"));
                }
                if servers.len() == MAX_SERVERS {
                    return Err(format!("more than {MAX_SERVERS} servers"));
                }
                servers.push(value);
            }
            "action" => {
                action = Some(
                    Action::from_name(&value).ok_or_else(|| format!("unknown action '{value}'"))?,
                )
            }
            "w" => weight = value,
            // HAProxy's page also posts its own bookkeeping fields; they do not matter here.
            _ => {}
        }
    }
    let backend = backend.ok_or("missing backend ('b')")?;
    let action = action.ok_or("missing action")?;
    if servers.is_empty() {
        return Err("no server selected ('s')".into());
    }
    if action == Action::Weight && !valid_weight(&weight) {
        return Err(format!(
            "invalid weight '{weight}' (expected 0 to 256, or a percentage like 50%)"
        ));
    }
    Ok(Request {
        backend,
        servers,
        action,
        weight,
    })
}

/// HAProxy's proxy and server name characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// `N` or `N%` with up to three digits; the executor checks the range.
fn valid_weight(weight: &str) -> bool {
    let digits = weight.strip_suffix('%').unwrap_or(weight);
    (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The backend's name, looked up in the current snapshot.
pub fn backend_name<'a>(stats: &'a Stats, backend: &BackendRef) -> Option<&'a str> {
    stats
        .proxies
        .iter()
        .filter(|p| p.backend.is_some())
        .find(|p| match backend {
            BackendRef::Id(id) => p.iid == *id,
            BackendRef::Name(name) => p.name == *name,
        })
        .map(|p| p.name.as_str())
}

/// What one server's command gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `backend/server`.
    pub server: String,
    /// The Runtime API command that was run.
    pub command: String,
    /// The CLI's answer, trimmed (empty on success).
    pub answer: String,
    pub ok: bool,
}

impl Outcome {
    /// The Runtime API answers a successful `set server`/`enable`/`disable` with nothing;
    /// any text is HAProxy's error (or a warning that the change was not saved).
    pub fn new(server: String, command: String, answer: &str) -> Outcome {
        let answer = answer.trim().to_string();
        Outcome {
            server,
            command,
            ok: answer.is_empty(),
            answer,
        }
    }
}

/// HAProxy's `;st=` code for a batch: everything done, part of it, or nothing.
pub fn status(outcomes: &[Outcome]) -> &'static str {
    let done = outcomes.iter().filter(|o| o.ok).count();
    if done == 0 {
        "NONE"
    } else if done == outcomes.len() {
        "DONE"
    } else {
        "PART"
    }
}

/// The JSON answer the page reads (when it asks with `Accept: application/json`).
pub fn json_answer(status: &str, outcomes: &[Outcome]) -> String {
    let results: Vec<_> = outcomes
        .iter()
        .map(|o| {
            json!({
                "server": o.server,
                "command": o.command,
                "ok": o.ok,
                "answer": o.answer,
            })
        })
        .collect();
    let mut text = json!({ "status": status, "results": results }).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_api::model::{BackendStats, Proxy};

    #[test]
    fn haproxy_form() {
        let r = parse_form("s=s1&s=s2&action=drain&b=%233").unwrap();
        assert_eq!(r.backend, BackendRef::Id(3));
        assert_eq!(r.servers, ["s1", "s2"]);
        assert_eq!(r.action, Action::Drain);
        assert_eq!(
            r.action.command("pg", "s1", ""),
            "set server pg/s1 state drain"
        );
        let r = parse_form("b=pg&s=db-1.a:b&action=weight&w=50%25").unwrap();
        assert_eq!(r.backend, BackendRef::Name("pg".into()));
        assert_eq!(
            r.action.command("pg", &r.servers[0], &r.weight),
            "set server pg/db-1.a:b weight 50%"
        );
    }

    #[test]
    fn refuses_what_could_change_the_command() {
        for bad in [
            "b=pg&s=s1+state+maint&action=ready",
            "b=pg&s=s1%3Bshutdown&action=ready",
            "b=pg&s=s1%0Aquit&action=ready",
            "b=pg&s=&action=ready",
            "b=p%20g&s=s1&action=ready",
            "b=%23x&s=s1&action=ready",
            "b=pg&s=s1&action=frobnicate",
            "b=pg&s=s1&action=weight&w=1+2",
            "b=pg&s=s1&action=weight",
            "b=pg&s=s1&action=weight&w=1000",
            "b=pg&action=ready",
            "s=s1&action=ready",
            "b=pg&s=s1",
            "b=pg&s=s1&action=%zz",
        ] {
            assert!(parse_form(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_action_has_a_command() {
        for name in [
            "ready", "drain", "maint", "enable", "disable", "ehlth", "dhlth", "hrunn", "hnolb",
            "hdown", "eagent", "dagent", "arunn", "adown", "shutdown", "weight",
        ] {
            let action = Action::from_name(name).unwrap();
            let text = action.command("b", "s", "10");
            let parsed = switchyard_api::command::parse(&text);
            assert!(parsed.is_ok(), "{name}: {text}: {parsed:?}");
        }
    }

    #[test]
    fn statuses() {
        let ok = Outcome::new("b/s".into(), "x".into(), "\n");
        let bad = Outcome::new("b/t".into(), "x".into(), "No such server.\n");
        assert!(ok.ok && !bad.ok);
        assert_eq!(bad.answer, "No such server.");
        assert_eq!(status(std::slice::from_ref(&ok)), "DONE");
        assert_eq!(status(&[ok.clone(), bad.clone()]), "PART");
        assert_eq!(status(std::slice::from_ref(&bad)), "NONE");
        let json: serde_json::Value =
            serde_json::from_str(&json_answer("PART", &[ok, bad])).unwrap();
        assert_eq!(json["status"], "PART");
        assert_eq!(json["results"][1]["answer"], "No such server.");
    }

    #[test]
    fn backend_lookup() {
        let stats = Stats {
            proxies: vec![
                Proxy {
                    name: "fe".into(),
                    iid: 2,
                    forced_id: false,
                    mode: Default::default(),
                    frontend: Some(Default::default()),
                    backend: None,
                },
                Proxy {
                    name: "pg".into(),
                    iid: 3,
                    forced_id: false,
                    mode: Default::default(),
                    frontend: None,
                    backend: Some(BackendStats::default()),
                },
            ],
        };
        assert_eq!(backend_name(&stats, &BackendRef::Id(3)), Some("pg"));
        assert_eq!(
            backend_name(&stats, &BackendRef::Name("pg".into())),
            Some("pg")
        );
        assert_eq!(backend_name(&stats, &BackendRef::Id(2)), None);
        assert_eq!(backend_name(&stats, &BackendRef::Name("fe".into())), None);
    }
}
