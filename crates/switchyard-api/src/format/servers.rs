//! `show servers state`, `show servers conn`, `show backend`, `get weight`.

use super::replies;
use crate::model::{Proxy, Server, Stats};

/// The header of `show servers state` (after its version line `1`).
pub const SERVERS_STATE_HEADER: &str = "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";

/// Proxies with a backend side, optionally only the one named. `Err` carries HAProxy's
/// reply for an unknown name.
fn backends<'a>(stats: &'a Stats, name: Option<&str>) -> Result<Vec<&'a Proxy>, String> {
    let all = stats.proxies.iter().filter(|p| p.backend.is_some());
    match name {
        None => Ok(all.collect()),
        Some(n) => {
            let v: Vec<&Proxy> = all.filter(|p| p.name == n).collect();
            if v.is_empty() {
                Err(replies::CANT_FIND_BACKEND.to_string())
            } else {
                Ok(v)
            }
        }
    }
}

fn dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn servers_state_line(px: &Proxy, s: &Server) -> String {
    format!(
        "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}\n",
        px.iid,
        px.name,
        s.id,
        s.name,
        if s.addr.is_empty() { "-" } else { &s.addr },
        s.op_state as u8,
        s.admin_state.0,
        s.uweight,
        s.iweight,
        s.last_change,
        s.check.status as u8,
        s.check.result as u8,
        s.check.health,
        s.check.state.0 & 0x0f,
        s.agent.state.0 & 0x1f,
        px.forced_id as u8,
        s.forced_id as u8,
        dash(&s.fqdn),
        s.port,
        dash(&s.srvrecord),
        s.use_ssl as u8,
        s.check.port,
        dash(&s.check.addr),
        dash(&s.agent.addr),
        s.agent.port,
    )
}

/// `show servers state [<backend>]`: the format version line `1`, the header, one line per
/// server of every backend (or of the one named; `Can't find backend.` if unknown). The
/// file `server-state-file` loads has exactly this format.
pub fn show_servers_state(stats: &Stats, backend: Option<&str>) -> String {
    let pxs = match backends(stats, backend) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut out = String::from("1\n");
    out.push_str(SERVERS_STATE_HEADER);
    for px in pxs {
        for s in &px.backend.as_ref().expect("filtered").servers {
            out.push_str(&servers_state_line(px, s));
        }
    }
    out
}

/// `show backend`: `# name` then every proxy with a backend side, in order.
pub fn show_backend(stats: &Stats) -> String {
    let mut out = String::from("# name\n");
    for px in stats.proxies.iter().filter(|p| p.backend.is_some()) {
        out.push_str(&px.name);
        out.push('\n');
    }
    out
}

/// `show servers conn [<backend>]`: connection pools per server; `nbthread` sets the
/// number of `idle_per_thr` columns.
pub fn show_servers_conn(stats: &Stats, backend: Option<&str>, nbthread: u32) -> String {
    let pxs = match backends(stats, backend) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut out = format!(
        "# bkname/svname bkid/svid addr port - purge_delay used_cur used_max need_est unsafe_nb safe_nb idle_lim idle_cur idle_per_thr[{nbthread}]\n"
    );
    for px in pxs {
        for s in &px.backend.as_ref().expect("filtered").servers {
            out.push_str(&format!(
                "{}/{} {}/{} {} {} - {} {} {} {} {} {} {} {}",
                px.name,
                s.name,
                px.iid,
                s.id,
                if s.addr.is_empty() { "-" } else { &s.addr },
                s.port,
                s.pool_purge_delay_ms,
                s.used_conns,
                s.used_max,
                s.need_conn_est,
                s.unsafe_conns,
                s.safe_conns,
                s.pool_max_conn.map_or(-1, |m| m as i64),
                s.idle_conns,
            ));
            // HAProxy has no per-thread idle lists for a server whose pool is disabled
            // (`pool-max-conn 0`, e.g. every server added with `add server` in 2.6).
            if s.pool_max_conn != Some(0) {
                for t in 0..nbthread as usize {
                    out.push_str(&format!(
                        " {}",
                        s.idle_per_thread.get(t).copied().unwrap_or(0)
                    ));
                }
            }
            out.push('\n');
        }
    }
    out
}

/// Looks up `backend/server` as `get weight`, `set weight` and `set server` do; `Err` is
/// HAProxy's reply (`Require 'backend/server'.`, `No such backend.`, `No such server.`).
pub fn find_server<'a>(stats: &'a Stats, arg: &str) -> Result<(&'a Proxy, &'a Server), String> {
    let Some((b, s)) = arg.split_once('/') else {
        return Err(replies::REQUIRE_BACKEND_SERVER.into());
    };
    let px = stats
        .proxies
        .iter()
        .find(|p| p.name == b && p.backend.is_some())
        .ok_or_else(|| replies::NO_SUCH_BACKEND.to_string())?;
    let srv = px
        .backend
        .as_ref()
        .and_then(|be| be.servers.iter().find(|x| x.name == s))
        .ok_or_else(|| replies::NO_SUCH_SERVER.to_string())?;
    Ok((px, srv))
}

/// `get weight <backend>/<server>`: `10 (initial 10)` (current user weight, configured
/// weight), or the lookup error.
pub fn get_weight(stats: &Stats, arg: &str) -> String {
    match find_server(stats, arg) {
        Ok((_, s)) => format!("{} (initial {})\n", s.uweight, s.iweight),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AdminState, BackendStats, Check, CheckResult, CheckState, CheckStatus, Mode, OpState,
    };

    fn stats() -> Stats {
        let s = Server {
            name: "db1".into(),
            id: 3,
            forced_id: true,
            addr: "10.0.0.1".into(),
            port: 5432,
            fqdn: Some("db1.example".into()),
            op_state: OpState::Running,
            admin_state: AdminState(AdminState::FDRAIN),
            uweight: 0,
            iweight: 100,
            last_change: 42,
            check: Check {
                state: CheckState(CheckState::CONFIGURED | CheckState::ENABLED),
                status: CheckStatus::L7Ok,
                result: CheckResult::Passed,
                health: 4,
                port: 8008,
                addr: Some("10.0.0.9".into()),
                ..Check::default()
            },
            pool_purge_delay_ms: 5000,
            pool_max_conn: Some(20),
            idle_per_thread: vec![1, 2],
            ..Server::default()
        };
        Stats {
            proxies: vec![
                Proxy {
                    name: "fe".into(),
                    iid: 2,
                    forced_id: false,
                    mode: Mode::Tcp,
                    frontend: Some(Default::default()),
                    backend: None,
                },
                Proxy {
                    name: "pg".into(),
                    iid: 10,
                    forced_id: true,
                    mode: Mode::Tcp,
                    frontend: None,
                    backend: Some(BackendStats {
                        servers: vec![s],
                        ..BackendStats::default()
                    }),
                },
            ],
        }
    }

    #[test]
    fn servers_state_line() {
        let out = show_servers_state(&stats(), None);
        assert_eq!(
            out,
            format!(
                "1\n{SERVERS_STATE_HEADER}10 pg 3 db1 10.0.0.1 2 8 0 100 42 15 3 4 6 0 1 1 db1.example 5432 - 0 8008 10.0.0.9 - 0\n"
            )
        );
        assert_eq!(
            show_servers_state(&stats(), Some("fe")),
            "Can't find backend.\n"
        );
    }

    #[test]
    fn backends_and_conn() {
        assert_eq!(show_backend(&stats()), "# name\npg\n");
        let out = show_servers_conn(&stats(), None, 3);
        assert!(
            out.ends_with(
                " idle_per_thr[3]\npg/db1 10/3 10.0.0.1 5432 - 5000 0 0 0 0 0 20 0 1 2 0\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn weight_lookup() {
        assert_eq!(get_weight(&stats(), "pg/db1"), "0 (initial 100)\n");
        assert_eq!(get_weight(&stats(), "fe/db1"), "No such backend.\n");
        assert_eq!(get_weight(&stats(), "pg/x"), "No such server.\n");
        assert_eq!(get_weight(&stats(), "pg"), "Require 'backend/server'.\n");
    }

    /// Observed on HAProxy 2.6: a server added with `add server` has no idle pool (and no
    /// purge delay), so no per-thread columns.
    #[test]
    fn dynamic_server_has_no_per_thread_columns() {
        let mut stats = stats();
        let s = &mut stats.proxies[1].backend.as_mut().unwrap().servers[0];
        s.pool_max_conn = Some(0);
        s.pool_purge_delay_ms = 0;
        s.idle_per_thread.clear();
        let out = show_servers_conn(&stats, None, 2);
        assert!(
            out.ends_with(" idle_per_thr[2]\npg/db1 10/3 10.0.0.1 5432 - 0 0 0 0 0 0 0 0\n"),
            "{out}"
        );
    }
}
