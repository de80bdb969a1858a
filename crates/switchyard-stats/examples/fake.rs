//! The stats page over made-up, moving data, to work on the page without a balancer:
//!
//! ```sh
//! cargo run -p switchyard-stats --example fake -- 127.0.0.1:8404
//! # then open http://127.0.0.1:8404/stats (admin allowed from localhost)
//! ```
//!
//! Counters grow on every snapshot; `set server ... state` and `set server ... weight` from
//! the page change the fake servers, other commands answer an error like the CLI would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_api::command::{AdminState as CliAdmin, Command, SetServer, Weight};
use switchyard_api::model::{
    AdminState, BackendStats, Check, CheckState, CheckStatus, Counters, FrontendStats, Info, Mode,
    OpState, Proxy, Server, Stats,
};
use switchyard_stats::{Admin, Page, Settings, Source};

struct Fake {
    stats: Mutex<Stats>,
}

fn server(name: &str, port: u16, op: OpState, backup: bool) -> Server {
    Server {
        name: name.into(),
        id: port as u32 % 10,
        addr: "10.0.0.1".into(),
        port,
        op_state: op,
        uweight: 1,
        iweight: 1,
        eweight: 1,
        backup,
        maxconn: Some(200),
        check: Check {
            state: CheckState(CheckState::CONFIGURED | CheckState::ENABLED),
            status: if op == OpState::Stopped {
                CheckStatus::L4Con
            } else {
                CheckStatus::L4Ok
            },
            desc: if op == OpState::Stopped {
                "Connection refused".into()
            } else {
                String::new()
            },
            rise: 2,
            fall: 3,
            health: if op == OpState::Stopped { 0 } else { 4 },
            ..Default::default()
        },
        ..Default::default()
    }
}

impl Fake {
    fn new() -> Fake {
        let backend = BackendStats {
            algo: "leastconn".into(),
            servers: vec![
                server("pg1", 5432, OpState::Running, false),
                server("pg2", 5433, OpState::Running, false),
                server("pg3", 5434, OpState::Stopped, false),
                server("pg-dr", 5435, OpState::Running, true),
            ],
            ..Default::default()
        };
        Fake {
            stats: Mutex::new(Stats {
                proxies: vec![Proxy {
                    name: "postgres".into(),
                    iid: 2,
                    forced_id: false,
                    mode: Mode::Tcp,
                    frontend: Some(FrontendStats {
                        slim: 2000,
                        ..Default::default()
                    }),
                    backend: Some(backend),
                }],
            }),
        }
    }
}

impl Source for Fake {
    fn stats(&self) -> Stats {
        let mut stats = self.stats.lock().unwrap();
        for proxy in &mut stats.proxies {
            let mut total = Counters::default();
            if let Some(be) = &mut proxy.backend {
                for (i, s) in be.servers.iter_mut().enumerate() {
                    if s.op_state == OpState::Running && s.admin_state.0 == 0 && !s.backup {
                        let c = &mut s.counters.counters;
                        c.stot += 3 + i as u64;
                        c.bin += 4000 * (i as u64 + 1);
                        c.bout += 90_000 * (i as u64 + 1);
                        c.scur = 5 + i as u32;
                        c.smax = c.smax.max(c.scur);
                    }
                    s.last_change += 1;
                    total.stot += s.counters.counters.stot;
                    total.bin += s.counters.counters.bin;
                    total.bout += s.counters.counters.bout;
                    total.scur += s.counters.counters.scur;
                }
                be.counters.counters = total.clone();
            }
            if let Some(fe) = &mut proxy.frontend {
                fe.counters = total;
            }
        }
        stats.clone()
    }

    fn info(&self) -> Info {
        Info {
            name: "Switchyard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            node: "fake".into(),
            maxconn: 4096,
            nbthread: 2,
            ..Default::default()
        }
    }

    async fn execute(&self, command: Command) -> String {
        let mut stats = self.stats.lock().unwrap();
        let Command::SetServer(target, change) = command else {
            return "This command is not supported by the fake.\n".into();
        };
        let Some(server) = stats
            .proxies
            .iter_mut()
            .filter(|p| p.name == target.backend)
            .filter_map(|p| p.backend.as_mut())
            .flat_map(|b| b.servers.iter_mut())
            .find(|s| s.name == target.server)
        else {
            return "No such server.\n".into();
        };
        match change {
            SetServer::State(state) => {
                server.admin_state = AdminState(match state {
                    CliAdmin::Ready => 0,
                    CliAdmin::Drain => AdminState::FDRAIN,
                    CliAdmin::Maint => AdminState::FMAINT,
                });
                server.last_change = 0;
                String::new()
            }
            SetServer::Weight(Weight::Absolute(w)) if w <= 256 => {
                server.uweight = w;
                server.eweight = w;
                String::new()
            }
            _ => "Not supported by the fake.\n".into(),
        }
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8404".into())
        .parse()
        .expect("an address like 127.0.0.1:8404");
    let listener = switchyard_stats::bind(addr, false).expect("binding");
    let settings = Settings {
        proxy: "stats".into(),
        page: Some(Page {
            uri: "/stats".into(),
            refresh: Duration::from_secs(2),
            realm: switchyard_stats::DEFAULT_REALM.into(),
            auths: Vec::new(),
            hide_version: false,
            admin: Admin::Localhost,
        }),
        prometheus_uri: Some("/metrics".into()),
        header_timeout: switchyard_stats::DEFAULT_HEADER_TIMEOUT,
    };
    println!("http://{addr}/stats  http://{addr}/metrics");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    switchyard_stats::serve(listener, settings, Arc::new(Fake::new()), stopped).await;
}
