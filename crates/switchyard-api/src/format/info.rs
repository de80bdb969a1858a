//! `show info`, `show info typed`, `show info json`.

use super::fields::INFO_FIELDS;
use super::{json_tags, FormatKind, Value};
use crate::model::Info;

/// HAProxy's `Uptime`: `0d 1h00m53s`.
pub(crate) fn uptime(secs: u32) -> String {
    format!(
        "{}d {}h{:02}m{:02}s",
        secs / 86400,
        (secs % 86400) / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

fn value(info: &Info, name: &str) -> Option<Value> {
    use Value::{Str, U32, U64};
    let mb = |b: u64| U32((b / (1024 * 1024)) as u32);
    Some(match name {
        "Name" => Str(info.name.clone()),
        "Version" | "Build info" => Str(info.version.clone()),
        "Release_date" => Str(info.release_date.clone()),
        "Nbthread" => U32(info.nbthread),
        "Nbproc" | "Process_num" => U32(1),
        "Pid" => U32(info.pid),
        "Uptime" => Str(uptime(info.uptime_sec)),
        "Uptime_sec" => U32(info.uptime_sec),
        "PoolAlloc_MB" => mb(info.pool_alloc_bytes),
        "PoolUsed_MB" => mb(info.pool_used_bytes),
        "PoolFailed" => U32(info.pool_failed),
        "Ulimit-n" => U32(info.ulimit_n),
        "Maxsock" => U32(info.maxsock),
        "Maxconn" => U32(info.maxconn),
        "Hard_maxconn" => U32(info.hard_maxconn),
        "CurrConns" => U32(info.curr_conns),
        "CumConns" => U32(info.cum_conns),
        "CumReq" => U32(info.cum_req),
        "ConnRate" => U32(info.conn_rate),
        "ConnRateLimit" => U32(info.conn_rate_limit),
        "MaxConnRate" => U32(info.max_conn_rate),
        "SessRate" => U32(info.sess_rate),
        "SessRateLimit" => U32(info.sess_rate_limit),
        "MaxSessRate" => U32(info.max_sess_rate),
        "Tasks" => U32(info.tasks),
        "Run_queue" => U32(info.run_queue),
        "Idle_pct" => U32(info.idle_pct),
        "node" => Str(info.node.clone()),
        "description" => Str(info.description.clone()?),
        "Stopping" => U32(info.stopping as u32),
        "Jobs" => U32(info.jobs),
        "Unstoppable Jobs" => U32(info.unstoppable_jobs),
        "Listeners" => U32(info.listeners),
        "DroppedLogs" => U32(info.dropped_logs),
        "BusyPolling" => U32(info.busy_polling as u32),
        "FailedResolutions" => U32(info.failed_resolutions),
        "TotalBytesOut" => U64(info.total_bytes_out),
        "BytesOutRate" => U64(info.bytes_out_rate),
        "PoolAlloc_bytes" => U64(info.pool_alloc_bytes),
        "PoolUsed_bytes" => U64(info.pool_used_bytes),
        "Start_time_sec" => U32(info.start_time_sec),
        // C's `%#x`: no `0x` prefix for zero.
        "Tainted" if info.tainted == 0 => Str("0".into()),
        "Tainted" => Str(format!("{:#x}", info.tainted)),
        // Features Switchyard does not have: SSL, compression, pipes, peers, log receiving,
        // debug commands. HAProxy prints 0 for them when unused.
        _ => {
            if name == "TotalSplicdedBytesOut" {
                U64(0)
            } else {
                U32(0)
            }
        }
    })
}

/// `show info` in the given format. Fields without a value (`description` when unset) are
/// skipped, as HAProxy does.
pub fn show_info(info: &Info, kind: FormatKind) -> String {
    let mut out = String::new();
    let mut first = true;
    if kind == FormatKind::Json {
        out.push('[');
    }
    for &(pos, name, tags, _) in INFO_FIELDS {
        let Some(v) = value(info, name) else { continue };
        match kind {
            FormatKind::Csv => {
                out.push_str(&format!("{name}: {}\n", v.raw()));
            }
            FormatKind::Typed => {
                out.push_str(&format!(
                    "{pos}.{name}.1:{tags}:{}:{}\n",
                    v.type_name(),
                    v.raw()
                ));
            }
            FormatKind::Json => {
                if !first {
                    out.push(',');
                }
                out.push_str(&format!(
                    "{{\"field\":{{\"pos\":{pos},\"name\":\"{name}\"}},\"processNum\":1,\"tags\":{},\"value\":{{\"type\":\"{}\",\"value\":{}}}}}",
                    json_tags(tags),
                    v.type_name(),
                    v.json()
                ));
            }
        }
        first = false;
    }
    if kind == FormatKind::Json {
        out.push_str("]\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_like_haproxy() {
        assert_eq!(uptime(5), "0d 0h00m05s");
        assert_eq!(uptime(3653), "0d 1h00m53s");
        assert_eq!(uptime(90061), "1d 1h01m01s");
    }

    fn info() -> Info {
        Info {
            name: "HAProxy".into(),
            version: "2.6.12".into(),
            node: "n1".into(),
            ..Info::default()
        }
    }

    #[test]
    fn description_only_when_set() {
        let mut i = info();
        assert!(!show_info(&i, FormatKind::Csv).contains("description"));
        i.description = Some("pg pool".into());
        let out = show_info(&i, FormatKind::Csv);
        assert!(out.contains("node: n1\ndescription: pg pool\nStopping: 0\n"));
        let typed = show_info(&i, FormatKind::Typed);
        assert!(typed.contains("51.description.1:COS:str:pg pool\n"));
    }

    #[test]
    fn formats_and_tainted() {
        let mut i = info();
        i.tainted = 0x24;
        i.pool_alloc_bytes = 3 * 1024 * 1024 + 5;
        let out = show_info(&i, FormatKind::Csv);
        assert!(out.starts_with("Name: HAProxy\nVersion: 2.6.12\n"));
        assert!(out.contains("PoolAlloc_MB: 3\n"));
        assert!(out.ends_with("Build info: 2.6.12\nMemmax_bytes: 0\nPoolAlloc_bytes: 3145733\nPoolUsed_bytes: 0\nStart_time_sec: 0\nTainted: 0x24\n"));
        let typed = show_info(&i, FormatKind::Typed);
        assert!(typed.starts_with("0.Name.1:POS:str:HAProxy\n1.Version.1:POS:str:2.6.12\n"));
        assert!(typed.contains("\n54.Unstoppable Jobs.1:MGP:u32:0\n"));
        let json = show_info(&i, FormatKind::Json);
        assert!(json.starts_with(r#"[{"field":{"pos":0,"name":"Name"},"processNum":1,"tags":{"origin":"Product","nature":"Output","scope":"Service"},"value":{"type":"str","value":"HAProxy"}},"#));
        assert!(json.ends_with("\"value\":{\"type\":\"str\",\"value\":\"0x24\"}}]\n"));
    }
}
