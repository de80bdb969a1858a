//! `show stat` in CSV, typed and JSON forms.

use super::fields::STAT_FIELDS;
use super::{csv_escape, json_tags, FormatKind, Value};
use crate::model::{
    AdminState, BackendCounters, BackendStats, Check, CheckState, FrontendStats, Mode, ObjType,
    OpState, Proxy, ProxyFilter, Server, StatFilter, Stats,
};

/// Index of the last generic field (`agg_check_status`); CSV prints a `-` column after it,
/// before the per-module fields.
const LAST_GENERIC: usize = 102;

/// One row: a value (or nothing) per entry of [`STAT_FIELDS`].
struct Row {
    obj: ObjType,
    iid: u32,
    sid: u32,
    values: Vec<Option<Value>>,
}

impl Row {
    fn new(obj: ObjType, iid: u32, sid: u32) -> Row {
        Row {
            obj,
            iid,
            sid,
            values: vec![None; STAT_FIELDS.len()],
        }
    }

    fn set(&mut self, name: &str, v: Value) {
        let i = STAT_FIELDS
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unknown stat field {name}"));
        self.values[i] = Some(v);
    }

    fn u32(&mut self, name: &str, v: u32) {
        self.set(name, Value::U32(v));
    }

    fn u64(&mut self, name: &str, v: u64) {
        self.set(name, Value::U64(v));
    }

    fn str(&mut self, name: &str, v: &str) {
        self.set(name, Value::Str(v.to_string()));
    }

    /// `hrsp_1xx`..`hrsp_other`.
    fn hrsp(&mut self, hrsp: &[u64; 6]) {
        for (name, v) in HRSP.iter().zip(hrsp) {
            self.u64(name, *v);
        }
    }

    /// The per-module fields (SSL, H2, H1) from `first` by name on, all 0 (Switchyard has
    /// no SSL or HTTP multiplexing).
    fn modules(&mut self, names: &[&str]) {
        for n in names {
            self.u64(n, 0);
        }
    }

    fn tags(&self, i: usize) -> &'static str {
        let col = match self.obj {
            ObjType::Frontend => 0,
            ObjType::Backend => 1,
            ObjType::Server => 2,
        };
        STAT_FIELDS[i].1[col].0
    }

    fn csv(&self, out: &mut String) {
        for (i, v) in self.values.iter().enumerate() {
            if let Some(v) = v {
                match v {
                    Value::Str(s) => out.push_str(&csv_escape(s)),
                    other => out.push_str(&other.raw()),
                }
            }
            out.push(',');
            if i == LAST_GENERIC {
                out.push_str("-,");
            }
        }
        out.push('\n');
    }

    fn prefix(&self) -> char {
        match self.obj {
            ObjType::Frontend => 'F',
            ObjType::Backend => 'B',
            ObjType::Server => 'S',
        }
    }

    fn typed(&self, out: &mut String) {
        for (i, v) in self.values.iter().enumerate() {
            let Some(v) = v else { continue };
            out.push_str(&format!(
                "{}.{}.{}.{}.{}.1:{}:{}:{}\n",
                self.prefix(),
                self.iid,
                self.sid,
                i,
                STAT_FIELDS[i].0,
                self.tags(i),
                v.type_name(),
                v.raw()
            ));
        }
    }

    fn json(&self, out: &mut String) {
        let obj = match self.obj {
            ObjType::Frontend => "Frontend",
            ObjType::Backend => "Backend",
            ObjType::Server => "Server",
        };
        out.push('[');
        let mut first = true;
        for (i, v) in self.values.iter().enumerate() {
            let Some(v) = v else { continue };
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&format!(
                "{{\"objType\":\"{obj}\",\"proxyId\":{},\"id\":{},\"field\":{{\"pos\":{i},\"name\":\"{}\"}},\"processNum\":1,\"tags\":{},\"value\":{{\"type\":\"{}\",\"value\":{}}}}}",
                self.iid,
                self.sid,
                STAT_FIELDS[i].0,
                json_tags(self.tags(i)),
                v.type_name(),
                v.json()
            ));
        }
        out.push(']');
    }
}

const HRSP: [&str; 6] = [
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
];

const ALL_MODULES: &[&str] = &[
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_open_connections",
    "h2_backend_open_streams",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
];

fn frontend_row(px: &Proxy, fe: &FrontendStats) -> Row {
    let c = &fe.counters;
    let mut r = Row::new(ObjType::Frontend, px.iid, 0);
    r.str("pxname", &px.name);
    r.str("svname", "FRONTEND");
    r.u32("scur", c.scur);
    r.u32("smax", c.smax);
    r.u32("slim", fe.slim);
    r.u64("stot", c.stot);
    r.u64("bin", c.bin);
    r.u64("bout", c.bout);
    r.u64("dreq", c.dreq);
    r.u64("dresp", c.dresp);
    r.u64("ereq", fe.ereq);
    r.str("status", fe.status.as_str());
    r.u32("pid", 1);
    r.u32("iid", px.iid);
    r.u32("sid", 0);
    r.u32("type", ObjType::Frontend as u32);
    r.u32("rate", c.rate);
    r.u32("rate_lim", fe.rate_lim);
    r.u32("rate_max", c.rate_max);
    r.u32("req_rate", fe.req_rate);
    r.u32("req_rate_max", fe.req_rate_max);
    r.u64("req_tot", fe.req_tot);
    for n in ["comp_in", "comp_out", "comp_byp", "comp_rsp"] {
        r.u64(n, 0);
    }
    r.str("mode", px.mode.as_str());
    r.u32("conn_rate", fe.conn_rate);
    r.u32("conn_rate_max", fe.conn_rate_max);
    r.u64("conn_tot", fe.conn_tot);
    r.u64("dcon", fe.dcon);
    r.u64("dses", fe.dses);
    r.u64("wrew", c.wrew);
    r.u64("eint", c.eint);
    if px.mode == Mode::Http {
        r.hrsp(&c.hrsp);
        // Switchyard intercepts nothing and has no cache: 0, as HAProxy prints without them.
        for n in ["intercepted", "cache_lookups", "cache_hits"] {
            r.u64(n, 0);
        }
    }
    r.modules(ALL_MODULES);
    r
}

/// The columns servers and backends share.
fn backend_counters(r: &mut Row, bc: &BackendCounters) {
    let c = &bc.counters;
    r.u32("qcur", bc.qcur);
    r.u32("qmax", bc.qmax);
    r.u32("scur", c.scur);
    r.u32("smax", c.smax);
    r.u64("stot", c.stot);
    r.u64("bin", c.bin);
    r.u64("bout", c.bout);
    r.u64("dresp", c.dresp);
    r.u64("econ", bc.econ);
    r.u64("eresp", bc.eresp);
    r.u64("wretr", bc.wretr);
    r.u64("wredis", bc.wredis);
    r.u32("pid", 1);
    r.u64("lbtot", bc.lbtot);
    r.u32("rate", c.rate);
    r.u32("rate_max", c.rate_max);
    r.u64("cli_abrt", bc.cli_abrt);
    r.u64("srv_abrt", bc.srv_abrt);
    r.set(
        "lastsess",
        Value::S32(bc.lastsess.map_or(-1, |s| s.min(i32::MAX as u32) as i32)),
    );
    let t = &bc.timings;
    r.u32("qtime", t.qtime);
    r.u32("ctime", t.ctime);
    r.u32("rtime", t.rtime);
    r.u32("ttime", t.ttime);
    r.u64("wrew", c.wrew);
    r.u64("connect", bc.connect);
    r.u64("reuse", bc.reuse);
    r.u32("qtime_max", t.qtime_max);
    r.u32("ctime_max", t.ctime_max);
    r.u32("rtime_max", t.rtime_max);
    r.u32("ttime_max", t.ttime_max);
    r.u64("eint", c.eint);
}

/// HAProxy 2.6's `SRV_ADMF_MAINT` (0x23): the flags that put a server in maintenance.
/// `CMAINT` is not one of them: it only records that the configuration (or `add server`)
/// said `disabled`, and stays set once the server is made ready (admin state 4, running).
const MAINT: u8 = AdminState::FMAINT | AdminState::IMAINT | AdminState::RMAINT;

fn in_maint(s: &Server) -> bool {
    s.admin_state.0 & MAINT != 0
}

/// HAProxy's `srv_is_usable`: may take new traffic.
fn usable(s: &Server) -> bool {
    s.eweight > 0
        && !in_maint(s)
        && !s.admin_state.is_drain()
        && matches!(s.op_state, OpState::Running | OpState::Starting)
}

/// Whether a check's results are shown: enabled and not paused by maintenance (HAProxy's
/// `(state & (CHK_ST_ENABLED|CHK_ST_PAUSED)) == CHK_ST_ENABLED`).
fn shows_results(chk: &Check) -> bool {
    chk.state.0 & (CheckState::ENABLED | CheckState::PAUSED) == CheckState::ENABLED
}

/// A server's `status` column (HAProxy 2.6's `srv_compute_status` + `srv_hlt_st`):
/// `UP`, `DOWN`, `UP 1/3` (going down), `DOWN 1/2` (going up), `NOLB`, `DRAIN`, `no check`,
/// `MAINT`, `MAINT (via be/srv)`, `MAINT (resolution)`.
pub fn server_status(s: &Server) -> String {
    use crate::model::AdminState as A;
    let admin = s.admin_state.0;
    if admin & A::RMAINT != 0 {
        return "MAINT (resolution)".into();
    }
    if admin & A::IMAINT != 0 {
        return format!("MAINT (via {})", s.tracked.as_deref().unwrap_or("?"));
    }
    if admin & MAINT != 0 {
        return "MAINT".into();
    }
    let chk = &s.check;
    let chk_on = chk.state.is_enabled();
    let agent_on = s.agent.state.is_enabled();
    let full = (chk.rise + chk.fall).saturating_sub(1);
    // HAProxy's "%s %d/%d" while going down: checks passed beyond rise-1, out of fall
    // (signed: a dynamic server whose checks were just enabled shows "UP -1/3").
    let going_down = |word: &str| {
        format!(
            "{word} {}/{}",
            i64::from(chk.health) + 1 - i64::from(chk.rise),
            chk.fall
        )
    };
    match s.op_state {
        OpState::Running | OpState::Starting => {
            let is_going_down = chk_on && chk.health < full;
            if s.admin_state.is_drain() {
                if agent_on {
                    "DRAIN (agent)".into()
                } else if is_going_down {
                    going_down("DRAIN")
                } else {
                    "DRAIN".into()
                }
            } else if is_going_down {
                going_down("UP")
            } else if !chk_on {
                "no check".into()
            } else {
                "UP".into()
            }
        }
        OpState::Stopping => {
            if (!chk_on && s.tracked.is_none()) || chk.health == full {
                "NOLB".into()
            } else {
                going_down("NOLB")
            }
        }
        OpState::Stopped => {
            if agent_on && s.agent.health == 0 {
                "DOWN (agent)".into()
            } else if chk_on && chk.health == 0 {
                "DOWN".into()
            } else if agent_on || chk_on {
                format!("DOWN {}/{}", chk.health, chk.rise)
            } else {
                "DOWN".into()
            }
        }
    }
}

/// The result columns of a health check (`check_*`, `last_chk`) or agent check (`agent_*`,
/// `last_agt`).
fn check_results(r: &mut Row, chk: &Check, prefix: &str, last: &str) {
    let in_progress = chk.state.0 & CheckState::INPROGRESS != 0;
    let status = if in_progress {
        format!("* {}", chk.status.name())
    } else {
        chk.status.name().to_string()
    };
    r.str(&format!("{prefix}_status"), &status);
    // HAProxy prints the code from HCHK_STATUS_L57DATA (14) on.
    if chk.status as u8 >= 14 {
        r.u32(&format!("{prefix}_code"), chk.code.unwrap_or(0));
    }
    if chk.status.is_finished() {
        r.u64(&format!("{prefix}_duration"), chk.duration_ms);
    }
    // Printed even when empty (typed/JSON show an empty string).
    r.str(last, &chk.desc);
    r.str(&format!("{prefix}_desc"), chk.status.description());
    r.u32(&format!("{prefix}_rise"), chk.rise);
    r.u32(&format!("{prefix}_fall"), chk.fall);
    r.u32(&format!("{prefix}_health"), chk.health);
}

fn server_row(px: &Proxy, s: &Server) -> Row {
    let mut r = Row::new(ObjType::Server, px.iid, s.id);
    r.str("pxname", &px.name);
    r.str("svname", &s.name);
    backend_counters(&mut r, &s.counters);
    if let Some(m) = s.maxconn {
        r.u32("slim", m);
    }
    r.str("status", &server_status(s));
    r.u32("weight", s.eweight);
    r.u32("act", !s.backup as u32);
    r.u32("bck", s.backup as u32);
    let chk = &s.check;
    // Counters of an enabled check are shown in maintenance too; its results are not.
    let chk_on = chk.state.is_enabled();
    if chk_on {
        r.u64("chkfail", chk.failed);
        r.u64("chkdown", chk.down_transitions);
    }
    r.u32("lastchg", s.last_change);
    if chk_on {
        r.u32("downtime", s.downtime);
    }
    if let Some(q) = s.maxqueue {
        r.u32("qlimit", q);
    }
    r.u32("iid", px.iid);
    r.u32("sid", s.id);
    if let Some(t) = &s.tracked {
        r.str("tracked", t);
    }
    r.u32("type", ObjType::Server as u32);
    if shows_results(chk) {
        check_results(&mut r, chk, "check", "last_chk");
    }
    if shows_results(&s.agent) {
        check_results(&mut r, &s.agent, "agent", "last_agt");
    }
    r.str("addr", &format!("{}:{}", s.addr, s.port));
    r.str("mode", px.mode.as_str());
    r.u32("srv_icur", s.idle_conns);
    if let Some(m) = s.pool_max_conn {
        r.u32("src_ilim", m);
    }
    r.u32("idle_conn_cur", s.unsafe_conns);
    r.u32("safe_conn_cur", s.safe_conns);
    r.u32("used_conn_cur", s.used_conns);
    r.u32("need_conn_est", s.need_conn_est);
    r.u32("uweight", s.uweight);
    if px.mode == Mode::Http {
        r.hrsp(&s.counters.counters.hrsp);
        r.u64("req_tot", s.counters.req_tot);
    }
    r.modules(&ALL_MODULES[..3]);
    r
}

/// Total weight HAProxy's load balancer sees: usable active servers, or, when there are
/// none, usable backups.
fn tot_weight(be: &BackendStats, w: impl Fn(&Server) -> u32) -> u32 {
    let act: u32 = be
        .servers
        .iter()
        .filter(|s| !s.backup && usable(s))
        .map(&w)
        .sum();
    if act > 0 {
        return act;
    }
    be.servers
        .iter()
        .filter(|s| s.backup && usable(s))
        .map(&w)
        .sum()
}

fn backend_row(px: &Proxy, be: &BackendStats) -> Row {
    let mut r = Row::new(ObjType::Backend, px.iid, 0);
    r.str("pxname", &px.name);
    r.str("svname", "BACKEND");
    backend_counters(&mut r, &be.counters);
    r.u32("slim", be.fullconn);
    r.u64("dreq", be.counters.counters.dreq);
    let weight = tot_weight(be, |s| s.eweight);
    let up = weight > 0 || be.servers.is_empty();
    r.str("status", if up { "UP" } else { "DOWN" });
    r.u32("weight", weight);
    let count = |backup: bool| {
        be.servers
            .iter()
            .filter(|s| s.backup == backup && usable(s))
            .count() as u32
    };
    r.u32("act", count(false));
    r.u32("bck", count(true));
    r.u64("chkdown", be.chkdown);
    r.u32("lastchg", be.lastchg);
    if !be.servers.is_empty() {
        r.u32("downtime", be.downtime);
    }
    r.u32("iid", px.iid);
    r.u32("sid", 0);
    r.u32("type", ObjType::Backend as u32);
    for n in ["comp_in", "comp_out", "comp_byp", "comp_rsp"] {
        r.u64(n, 0);
    }
    r.str("mode", px.mode.as_str());
    r.str("algo", &be.algo);
    r.u32("uweight", tot_weight(be, |s| s.uweight));
    // HAProxy 2.6 always prints 0 in these three on the stats socket.
    r.u32("agg_server_status", 0);
    r.u32("agg_server_check_status", 0);
    r.u32("agg_check_status", 0);
    if px.mode == Mode::Http {
        r.hrsp(&be.counters.counters.hrsp);
        r.u64("req_tot", be.counters.req_tot);
        for n in ["cache_lookups", "cache_hits"] {
            r.u64(n, 0);
        }
    }
    r.modules(ALL_MODULES);
    r
}

fn proxy_selected(px: &Proxy, f: &ProxyFilter) -> bool {
    match f {
        ProxyFilter::All => true,
        ProxyFilter::Id(id) => px.iid == *id,
        ProxyFilter::Name(n) => px.name == *n,
    }
}

fn rows(stats: &Stats, filter: &StatFilter) -> Vec<Row> {
    let mut rows = Vec::new();
    for px in stats
        .proxies
        .iter()
        .filter(|p| proxy_selected(p, &filter.proxy))
    {
        if let Some(fe) = &px.frontend {
            if filter.types & StatFilter::FRONTEND != 0 {
                rows.push(frontend_row(px, fe));
            }
        }
        if let Some(be) = &px.backend {
            if filter.types & StatFilter::SERVER != 0 {
                for s in &be.servers {
                    if filter.sid.is_some_and(|sid| sid != s.id) {
                        continue;
                    }
                    if filter.no_maint && in_maint(s) {
                        continue;
                    }
                    if filter.up && (s.op_state == OpState::Stopped || in_maint(s)) {
                        continue;
                    }
                    rows.push(server_row(px, s));
                }
            }
            if filter.types & StatFilter::BACKEND != 0 {
                rows.push(backend_row(px, be));
            }
        }
    }
    rows
}

/// The CSV header line of HAProxy 2.6 (`# pxname,svname,...,agg_check_status,-,ssl_sess,...,`).
pub(crate) fn csv_header() -> String {
    let mut h = String::from("# ");
    for (i, (name, _)) in STAT_FIELDS.iter().enumerate() {
        h.push_str(name);
        h.push(',');
        if i == LAST_GENERIC {
            h.push_str("-,");
        }
    }
    h.push('\n');
    h
}

/// `show stat [...]`: frontends, servers and backends of each selected proxy in
/// configuration order (a `listen` gives FRONTEND, its servers, BACKEND), in CSV (with the
/// `# ` header), typed (`F.iid.sid.pos.name.1:TAGS:type:value` lines, empty fields omitted)
/// or JSON (an array of rows, each an array of its non-empty fields).
pub fn show_stat(stats: &Stats, filter: &StatFilter, kind: FormatKind) -> String {
    let rows = rows(stats, filter);
    let mut out = String::new();
    match kind {
        FormatKind::Csv => {
            out.push_str(&csv_header());
            for r in &rows {
                r.csv(&mut out);
            }
        }
        FormatKind::Typed => {
            for r in &rows {
                r.typed(&mut out);
            }
        }
        FormatKind::Json => {
            out.push('[');
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                r.json(&mut out);
            }
            out.push_str("]\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AdminState, Check, CheckState, CheckStatus, Counters};

    fn checked(op: OpState, health: u32) -> Server {
        Server {
            name: "s".into(),
            id: 1,
            addr: "10.0.0.1".into(),
            port: 5432,
            op_state: op,
            uweight: 1,
            iweight: 1,
            eweight: 1,
            check: Check {
                state: CheckState(CheckState::CONFIGURED | CheckState::ENABLED),
                status: CheckStatus::L4Ok,
                rise: 2,
                fall: 3,
                health,
                ..Check::default()
            },
            ..Server::default()
        }
    }

    #[test]
    fn status_texts_follow_haproxy() {
        assert_eq!(server_status(&checked(OpState::Running, 4)), "UP");
        // health 3 of rise 2 + fall 3: one failure seen, going down: "UP 2/3".
        assert_eq!(server_status(&checked(OpState::Running, 3)), "UP 2/3");
        assert_eq!(server_status(&checked(OpState::Running, 2)), "UP 1/3");
        assert_eq!(server_status(&checked(OpState::Stopped, 0)), "DOWN");
        assert_eq!(server_status(&checked(OpState::Stopped, 1)), "DOWN 1/2");
        assert_eq!(server_status(&checked(OpState::Stopping, 4)), "NOLB");
        let mut s = checked(OpState::Running, 4);
        s.admin_state = AdminState(AdminState::FDRAIN);
        assert_eq!(server_status(&s), "DRAIN");
        s.check.health = 3;
        assert_eq!(server_status(&s), "DRAIN 2/3");
        s.admin_state = AdminState(AdminState::FMAINT);
        assert_eq!(server_status(&s), "MAINT");
        s.admin_state = AdminState(AdminState::IMAINT);
        s.tracked = Some("be/other".into());
        assert_eq!(server_status(&s), "MAINT (via be/other)");
        s.admin_state = AdminState(AdminState::RMAINT);
        assert_eq!(server_status(&s), "MAINT (resolution)");
        let unchecked = Server {
            op_state: OpState::Running,
            ..Server::default()
        };
        assert_eq!(server_status(&unchecked), "no check");
    }

    #[test]
    fn header_has_the_dash_column_and_trailing_comma() {
        let h = csv_header();
        assert!(h.starts_with("# pxname,svname,qcur,qmax,scur,"));
        assert!(h.contains(",agg_check_status,-,ssl_sess,"));
        assert!(h.ends_with(",h1_spliced_bytes_out,\n"));
        // 127 fields plus "-": 128 commas.
        assert_eq!(h.matches(',').count(), 128);
    }

    fn one_backend(servers: Vec<Server>) -> Stats {
        Stats {
            proxies: vec![Proxy {
                name: "be".into(),
                iid: 7,
                forced_id: false,
                mode: Mode::Tcp,
                frontend: None,
                backend: Some(BackendStats {
                    algo: "leastconn".into(),
                    fullconn: 10,
                    servers,
                    ..BackendStats::default()
                }),
            }],
        }
    }

    #[test]
    fn rows_have_as_many_columns_as_the_header() {
        let stats = one_backend(vec![checked(OpState::Running, 4)]);
        let out = show_stat(&stats, &StatFilter::default(), FormatKind::Csv);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        for l in &lines {
            assert_eq!(l.matches(',').count(), 128, "{l}");
        }
        assert!(lines[1].starts_with("be,s,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,"));
        assert!(lines[2].contains(",UP,1,1,0,,0,"));
        assert!(lines[2].contains(",tcp,leastconn,"));
    }

    #[test]
    fn maxconn_maxqueue_and_csv_quoting() {
        let mut s = checked(OpState::Stopped, 0);
        s.maxconn = Some(200);
        s.maxqueue = Some(50);
        s.check.status = CheckStatus::L7Sts;
        s.check.code = Some(503);
        s.check.desc = "HTTP status check returned code <3C>503<3E>, \"busy\"".into();
        let stats = one_backend(vec![s]);
        let out = show_stat(&stats, &StatFilter::default(), FormatKind::Csv);
        let row = out.lines().nth(1).unwrap();
        assert!(row.starts_with("be,s,0,0,0,0,200,"), "{row}");
        assert!(row.contains(",DOWN,"));
        assert!(row.contains(",50,1,7,1,"), "qlimit,pid,iid,sid: {row}");
        assert!(row.contains(",L7STS,503,0,"), "{row}");
        assert!(row.contains(",\"HTTP status check returned code <3C>503<3E>, \"\"busy\"\"\","));
        let typed = show_stat(&stats, &StatFilter::default(), FormatKind::Typed);
        assert!(typed.contains("S.7.1.6.slim.1:CLP:u32:200\n"));
        assert!(typed.contains("S.7.1.37.check_code.1:MOP:u32:503\n"));
        // The backend is DOWN: no usable server.
        assert!(typed.contains("B.7.0.17.status.1:SGP:str:DOWN\n"));
    }

    #[test]
    fn check_in_progress_is_starred() {
        let mut s = checked(OpState::Running, 4);
        s.check.state.0 |= CheckState::INPROGRESS;
        let out = show_stat(
            &one_backend(vec![s]),
            &StatFilter::default(),
            FormatKind::Csv,
        );
        assert!(out.contains(",* L4OK,"));
    }

    #[test]
    fn backup_weight_counts_only_without_active() {
        let mut b = checked(OpState::Running, 4);
        b.backup = true;
        b.eweight = 5;
        b.uweight = 5;
        let mut a = checked(OpState::Stopped, 0);
        a.eweight = 10;
        let f = StatFilter {
            types: StatFilter::BACKEND,
            ..StatFilter::default()
        };
        let out = show_stat(&one_backend(vec![a, b]), &f, FormatKind::Csv);
        assert!(out.contains(",UP,5,0,1,"), "{out}");
    }

    #[test]
    fn json_rows_and_empty() {
        let stats = one_backend(vec![]);
        let f = StatFilter {
            types: StatFilter::SERVER,
            ..StatFilter::default()
        };
        assert_eq!(show_stat(&stats, &f, FormatKind::Json), "[]\n");
        let out = show_stat(&stats, &StatFilter::default(), FormatKind::Json);
        assert!(out.starts_with("[[{\"objType\":\"Backend\",\"proxyId\":7,\"id\":0,\"field\":{\"pos\":0,\"name\":\"pxname\"},\"processNum\":1,\"tags\":{\"origin\":\"Key\",\"nature\":\"Name\",\"scope\":\"Service\"},\"value\":{\"type\":\"str\",\"value\":\"be\"}},"));
        assert!(out.ends_with("}]]\n"));
    }

    /// Observed on HAProxy 2.6: a `disabled` server made ready keeps CMAINT (admin state 4)
    /// and is an ordinary running server.
    #[test]
    fn config_maintenance_flag_alone_is_not_maintenance() {
        let mut s = checked(OpState::Running, 4);
        s.admin_state = AdminState(AdminState::CMAINT);
        assert_eq!(server_status(&s), "UP");
        let f = StatFilter {
            types: StatFilter::SERVER | StatFilter::BACKEND,
            no_maint: true,
            ..StatFilter::default()
        };
        let out = show_stat(&one_backend(vec![s]), &f, FormatKind::Csv);
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.contains(",UP,1,1,0,"), "the backend counts it: {out}");
    }

    /// In maintenance HAProxy pauses checks: their counters stay, their results go.
    #[test]
    fn paused_check_shows_counters_not_results() {
        let mut s = checked(OpState::Stopped, 0);
        s.admin_state = AdminState(AdminState::FMAINT);
        s.check.state.0 |= CheckState::PAUSED;
        s.check.down_transitions = 1;
        let typed = show_stat(
            &one_backend(vec![s]),
            &StatFilter::default(),
            FormatKind::Typed,
        );
        assert!(
            typed.contains("S.7.1.17.status.1:SGP:str:MAINT\n"),
            "{typed}"
        );
        assert!(typed.contains("S.7.1.21.chkfail.1:MCP:u64:0\n"));
        assert!(typed.contains("S.7.1.22.chkdown.1:MCP:u64:1\n"));
        assert!(!typed.contains(".check_status."), "{typed}");
        assert!(!typed.contains(".check_health."), "{typed}");
    }

    /// A server with only an agent: "no check", the agent's columns filled (captured from
    /// HAProxy 2.6 with an agent answering `up`).
    #[test]
    fn agent_columns() {
        let mut s = Server {
            name: "s".into(),
            id: 1,
            addr: "10.0.0.1".into(),
            port: 5432,
            op_state: OpState::Running,
            uweight: 1,
            iweight: 1,
            eweight: 1,
            ..Server::default()
        };
        s.agent = Check {
            state: CheckState(CheckState::CONFIGURED | CheckState::ENABLED | CheckState::AGENT),
            status: CheckStatus::L7Ok,
            code: Some(0),
            desc: "via agent : up".into(),
            rise: 1,
            fall: 1,
            health: 1,
            ..Check::default()
        };
        let stats = one_backend(vec![s.clone()]);
        let typed = show_stat(&stats, &StatFilter::default(), FormatKind::Typed);
        for line in [
            "S.7.1.17.status.1:SGP:str:no check\n",
            "S.7.1.57.last_agt.1:MOP:str:via agent : up\n",
            "S.7.1.62.agent_status.1:MOP:str:L7OK\n",
            "S.7.1.63.agent_code.1:MOP:u32:0\n",
            "S.7.1.64.agent_duration.1:MDP:u64:0\n",
            "S.7.1.66.agent_desc.1:MOP:str:Layer7 check passed\n",
            "S.7.1.70.agent_rise.1:CGS:u32:1\n",
            "S.7.1.71.agent_fall.1:CGS:u32:1\n",
            "S.7.1.72.agent_health.1:CGS:u32:1\n",
        ] {
            assert!(typed.contains(line), "{line}in\n{typed}");
        }
        let csv = show_stat(&stats, &StatFilter::default(), FormatKind::Csv);
        assert!(
            csv.contains(
                ",-1,,via agent : up,0,0,0,0,L7OK,0,0,,Layer7 check passed,,,,1,1,1,10.0.0.1:5432,"
            ),
            "{csv}"
        );
        // `disable agent`: the columns go.
        s.agent.state.0 &= !CheckState::ENABLED;
        let typed = show_stat(
            &one_backend(vec![s]),
            &StatFilter::default(),
            FormatKind::Typed,
        );
        assert!(!typed.contains("agent"), "{typed}");
    }

    /// A `mode http` listen: HAProxy fills the response classes everywhere, `req_tot` in
    /// every row, the request rates in the FRONTEND row; a TCP proxy leaves them empty.
    #[test]
    fn http_columns_only_for_http_proxies() {
        let mut stats = one_backend(vec![checked(OpState::Running, 4)]);
        let px = &mut stats.proxies[0];
        px.mode = Mode::Http;
        px.frontend = Some(FrontendStats {
            counters: Counters {
                hrsp: [0, 3, 0, 2, 1, 0],
                ..Counters::default()
            },
            req_rate: 1,
            req_rate_max: 4,
            req_tot: 6,
            ..FrontendStats::default()
        });
        let be = px.backend.as_mut().unwrap();
        be.counters.counters.hrsp = [0, 3, 0, 2, 1, 0];
        be.counters.req_tot = 6;
        be.servers[0].counters.counters.hrsp = [0, 3, 0, 2, 0, 0];
        be.servers[0].counters.req_tot = 5;
        let header = csv_header();
        let names: Vec<&str> = header[2..].split(',').collect();
        let out = show_stat(&stats, &StatFilter::default(), FormatKind::Csv);
        let column = |row: usize, name: &str| -> String {
            let i = names.iter().position(|n| *n == name).unwrap();
            out.lines()
                .nth(row)
                .unwrap()
                .split(',')
                .nth(i)
                .unwrap()
                .to_string()
        };
        // Rows: FRONTEND, s, BACKEND.
        for (row, expected) in [
            (1, ["0", "3", "0", "2", "1", "0"]),
            (3, ["0", "3", "0", "2", "1", "0"]),
            (2, ["0", "3", "0", "2", "0", "0"]),
        ] {
            for (name, v) in HRSP.iter().zip(expected) {
                assert_eq!(column(row, name), v, "row {row} {name}: {out}");
            }
        }
        assert_eq!(column(1, "req_tot"), "6");
        assert_eq!(column(1, "req_rate"), "1");
        assert_eq!(column(1, "req_rate_max"), "4");
        assert_eq!(column(2, "req_tot"), "5");
        assert_eq!(column(3, "req_tot"), "6");
        assert_eq!(column(2, "req_rate"), "");
        assert_eq!(column(1, "mode"), "http");
        assert_eq!(column(1, "intercepted"), "0");
        assert_eq!(column(3, "cache_hits"), "0");
        assert_eq!(column(2, "cache_hits"), "");
        let typed = show_stat(&stats, &StatFilter::default(), FormatKind::Typed);
        for line in [
            "F.7.0.40.hrsp_2xx.1:MCP:u64:3\n",
            "F.7.0.47.req_rate_max.1:MMP:u32:4\n",
            "S.7.1.42.hrsp_4xx.1:MCP:u64:2\n",
            "S.7.1.48.req_tot.1:MCP:u64:5\n",
            "B.7.0.43.hrsp_5xx.1:MCP:u64:1\n",
            "B.7.0.48.req_tot.1:MCP:u64:6\n",
        ] {
            assert!(typed.contains(line), "{line}in\n{typed}");
        }
        let json = show_stat(&stats, &StatFilter::default(), FormatKind::Json);
        assert!(json.contains("\"field\":{\"pos\":44,\"name\":\"hrsp_other\"},\"processNum\":1,\"tags\":{\"origin\":\"Metric\",\"nature\":\"Counter\",\"scope\":\"Process\"},\"value\":{\"type\":\"u64\",\"value\":0}}"));

        // The same counters in TCP mode print as today: no response classes, no req_tot
        // outside the FRONTEND row.
        stats.proxies[0].mode = Mode::Tcp;
        let out = show_stat(&stats, &StatFilter::default(), FormatKind::Csv);
        let column = |row: usize, name: &str| -> String {
            let i = names.iter().position(|n| *n == name).unwrap();
            out.lines()
                .nth(row)
                .unwrap()
                .split(',')
                .nth(i)
                .unwrap()
                .to_string()
        };
        for row in 1..=3 {
            for name in HRSP {
                assert_eq!(column(row, name), "");
            }
        }
        assert_eq!(column(2, "req_tot"), "");
        assert_eq!(column(3, "req_tot"), "");
        assert_eq!(column(1, "intercepted"), "");
    }

    /// Checks just enabled on a server that was made ready without them (a dynamic server):
    /// HAProxy's signed arithmetic prints "UP -1/3".
    #[test]
    fn going_down_count_is_signed() {
        let s = checked(OpState::Running, 0);
        assert_eq!(server_status(&s), "UP -1/3");
    }
}
