//! Built-in VRRP: runs the `vrrp_instance` sections with `switchyard-ha` and feeds them the
//! tracked conditions — `vrrp_script` commands, interfaces, and (our extension) backends of
//! this very balancer having enough usable servers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::{Config, VrrpInstance, VrrpScript};
use switchyard_engine::Runtime;
use switchyard_ha::{Instance, NotifyScripts, Tracking};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts every instance; the tasks end (masters resigning) when `stop` turns true.
pub fn start(
    config: &Config,
    current: Arc<dyn Fn() -> Arc<Runtime> + Send + Sync>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let scripts: HashMap<String, watch::Receiver<bool>> = config
        .vrrp_scripts
        .iter()
        .filter(|s| {
            config
                .vrrp_instances
                .iter()
                .any(|v| v.track_scripts.iter().any(|(name, _)| *name == s.name))
        })
        .map(|s| (s.name.clone(), spawn_script(s.clone(), stop.clone())))
        .collect();
    let mut tasks = Vec::new();
    for v in &config.vrrp_instances {
        let (report, tracking) = watch::channel(Tracking::default());
        let weights: HashMap<String, i32> = config
            .vrrp_scripts
            .iter()
            .map(|s| (s.name.clone(), s.weight))
            .collect();
        tasks.push(tokio::spawn(track(
            v.clone(),
            weights,
            scripts.clone(),
            Arc::clone(&current),
            report,
            stop.clone(),
        )));
        let instance = instance(v);
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let name = instance.name.clone();
            if let Err(error) = switchyard_ha::run(instance, tracking, stop).await {
                eprintln!("switchyard: VRRP instance '{name}' stopped: {error}");
            }
        }));
    }
    tasks
}

fn instance(v: &VrrpInstance) -> Instance {
    Instance {
        name: v.name.clone(),
        interface: v.interface.clone(),
        vrid: v.vrid,
        priority: v.priority,
        advert_interval: v.advert_int,
        preempt: v.preempt,
        preempt_delay: v.preempt_delay,
        start_as_master: v.start_as_master,
        addresses: v.addresses.clone(),
        unicast_peers: v.unicast_peers.clone(),
        source: v.unicast_src,
        notify: NotifyScripts {
            master: v.notify_master.clone(),
            backup: v.notify_backup.clone(),
            fault: v.notify_fault.clone(),
            any: v.notify.clone(),
        },
    }
}

/// `rise`/`fall` of a `vrrp_script`: the reported state changes only after that many
/// results in a row, so one slow or flaky run does not move the address.
#[derive(Debug, Clone, Copy)]
struct Hysteresis {
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl Hysteresis {
    fn new(rise: u32, fall: u32) -> Hysteresis {
        Hysteresis {
            rise,
            fall,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one run; the state to report when a threshold is reached.
    fn record(&mut self, passed: bool) -> Option<bool> {
        if passed {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (self.successes >= self.rise).then_some(true)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            (self.failures >= self.fall).then_some(false)
        }
    }
}

/// Runs a `vrrp_script` every `interval`; publishes its state after `rise` successes or
/// `fall` failures in a row (starting as passing, as keepalived's default).
fn spawn_script(script: VrrpScript, mut stop: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (report, state) = watch::channel(true);
    tokio::spawn(async move {
        let mut hysteresis = Hysteresis::new(script.rise, script.fall);
        loop {
            let timeout = script.timeout.unwrap_or(script.interval);
            let mut command = tokio::process::Command::new("/bin/sh");
            command.arg("-c").arg(&script.script).kill_on_drop(true);
            let passed = matches!(
                tokio::time::timeout(timeout, command.status()).await,
                Ok(Ok(status)) if status.success()
            );
            if let Some(ok) = hysteresis.record(passed) {
                report.send_if_modified(|state| std::mem::replace(state, ok) != ok);
            }
            tokio::select! {
                _ = tokio::time::sleep(script.interval) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    });
    state
}

/// Adds up tracked conditions, each `(holds, weight)`: a failing one with a negative weight
/// lowers the priority, a holding one with a positive weight raises it, a failing one with
/// weight 0 means FAULT (keepalived's rules).
fn combine(conditions: impl IntoIterator<Item = (bool, i32)>) -> Tracking {
    let mut tracking = Tracking::default();
    for (ok, weight) in conditions {
        match (ok, weight) {
            (false, 0) => tracking.fault = true,
            (false, w) if w < 0 => tracking.priority_delta += w,
            (true, w) if w > 0 => tracking.priority_delta += w,
            _ => {}
        }
    }
    tracking
}

/// What the instance's tracked conditions say now. The probes are parameters so that the
/// rules can be tested without scripts, interfaces or a running engine.
fn evaluate(
    v: &VrrpInstance,
    script_weights: &HashMap<String, i32>,
    script_ok: impl Fn(&str) -> bool,
    interface_up: impl Fn(&str) -> bool,
    usable_servers: impl Fn(&str) -> usize,
) -> Tracking {
    let scripts = v.track_scripts.iter().map(|(name, weight)| {
        let weight = weight.unwrap_or_else(|| script_weights.get(name).copied().unwrap_or(0));
        (script_ok(name), weight)
    });
    let interfaces = v
        .track_interfaces
        .iter()
        .map(|(name, weight)| (interface_up(name), *weight));
    let backends = v.track_backends.iter().map(|track| {
        let enough = usable_servers(&track.backend) >= track.min_up as usize;
        (enough, track.weight)
    });
    combine(scripts.chain(interfaces).chain(backends))
}

/// Recomputes the instance's tracking at each advertisement interval (and when a script
/// changes state).
async fn track(
    v: VrrpInstance,
    script_weights: HashMap<String, i32>,
    scripts: HashMap<String, watch::Receiver<bool>>,
    current: Arc<dyn Fn() -> Arc<Runtime> + Send + Sync>,
    report: watch::Sender<Tracking>,
    mut stop: watch::Receiver<bool>,
) {
    let every = v.advert_int.min(Duration::from_secs(1));
    loop {
        let runtime = current();
        let tracking = evaluate(
            &v,
            &script_weights,
            // A script that is not running (unknown name) counts as passing.
            |name| scripts.get(name).is_none_or(|state| *state.borrow()),
            interface_up,
            |backend| {
                runtime.backend(backend).map_or(0, |backend| {
                    backend.servers.load().iter().filter(|s| s.usable()).count()
                })
            },
        );
        report.send_if_modified(|previous| std::mem::replace(previous, tracking) != tracking);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// `operstate` says `up` (or `unknown`, which loopback and some virtual links report while
/// working).
fn interface_up(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"))
        .map(|state| matches!(state.trim(), "up" | "unknown"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn parse(text: &str) -> Config {
        let sources = [switchyard_config::Source {
            name: "<test>".into(),
            text: text.into(),
        }];
        match switchyard_config::parse_sources(&sources) {
            Ok(parsed) => parsed.config,
            Err(diagnostics) => panic!("{diagnostics}"),
        }
    }

    const INSTANCE: &str = "\
vrrp_script chk_api
    script \"true\"
    weight -20
vrrp_script chk_plain
    script \"true\"
vrrp_instance VI_1
    interface lo
    virtual_router_id 51
    priority 150
    virtual_ipaddress 10.9.0.100/24
    track_script chk_api
    track_script chk_plain weight 5
    track_interface eth9 weight -10
    track_backend pg min-up 2 weight -60
    track_backend ro
    notify_master \"/etc/sy/master.sh\"
    notify \"/etc/sy/event.sh\"
backend pg
    server a 127.0.0.1:1
backend ro
    server a 127.0.0.1:2
";

    fn weights(config: &Config) -> HashMap<String, i32> {
        config
            .vrrp_scripts
            .iter()
            .map(|s| (s.name.clone(), s.weight))
            .collect()
    }

    #[test]
    fn weights_add_up_as_in_keepalived() {
        assert_eq!(combine([]), Tracking::default());
        let t = combine([
            (false, -20),
            (true, 5),
            (true, -10),
            (false, 7),
            (false, -3),
        ]);
        assert_eq!(
            t,
            Tracking {
                priority_delta: -18,
                fault: false
            }
        );
        assert!(combine([(true, 0), (false, 0)]).fault);
    }

    #[test]
    fn tracked_scripts_interfaces_and_backends_set_the_priority() {
        let config = parse(INSTANCE);
        let v = &config.vrrp_instances[0];
        let weights = weights(&config);
        let at = |api_ok: bool, eth9: bool, pg: usize, ro: usize| {
            evaluate(
                v,
                &weights,
                |name| name != "chk_api" || api_ok,
                |name| name == "eth9" && eth9,
                |backend| match backend {
                    "pg" => pg,
                    "ro" => ro,
                    _ => 0,
                },
            )
        };
        // All good: only chk_plain's positive weight (5, overriding its own 0) applies.
        assert_eq!(at(true, true, 2, 1).priority_delta, 5);
        assert!(!at(true, true, 2, 1).fault);
        // chk_api failing takes its section's weight (-20).
        assert_eq!(at(false, true, 2, 1).priority_delta, -15);
        // The interface down: -10.
        assert_eq!(at(true, false, 2, 1).priority_delta, -5);
        // pg below min-up 2: -60; one server is not enough.
        assert_eq!(at(true, true, 1, 1).priority_delta, -55);
        // ro (min-up 1 by default, no weight) without a usable server: FAULT.
        let t = at(true, true, 2, 0);
        assert!(t.fault);
        assert_eq!(t.priority_delta, 5);
    }

    #[test]
    fn scripts_change_state_after_rise_or_fall_results_in_a_row() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None); // the failures in a row start over
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(false));
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.record(true), Some(true));
        let mut once = Hysteresis::new(1, 1);
        assert_eq!(once.record(false), Some(false));
        assert_eq!(once.record(true), Some(true));
    }

    #[test]
    fn the_instance_keeps_the_notify_hooks() {
        let config = parse(INSTANCE);
        let i = instance(&config.vrrp_instances[0]);
        assert_eq!(i.notify.master.as_deref(), Some("/etc/sy/master.sh"));
        assert_eq!(i.notify.any.as_deref(), Some("/etc/sy/event.sh"));
        assert_eq!(i.notify.backup, None);
        assert_eq!(
            switchyard_ha::speaker::notify_commands(
                &i.notify,
                &i.name,
                switchyard_ha::machine::State::Master,
                150
            ),
            [
                "/etc/sy/master.sh",
                "/etc/sy/event.sh INSTANCE VI_1 MASTER 150"
            ]
        );
    }

    #[test]
    fn interfaces_are_up_by_operstate() {
        // Loopback reports "unknown" while working.
        assert!(interface_up("lo"));
        assert!(!interface_up("no-such-if0"));
    }

    /// Waits (up to 10 s) until the watched value satisfies `done`.
    async fn until<T: Clone>(rx: &mut watch::Receiver<T>, done: impl Fn(&T) -> bool) -> T {
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| done(v)))
            .await
            .expect("timed out")
            .expect("sender gone")
            .clone()
    }

    #[tokio::test]
    async fn a_vrrp_script_is_run_and_its_state_reported() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("healthy");
        let mut script = parse(INSTANCE).vrrp_scripts[0].clone();
        script.script = format!("test -e '{}'", flag.display());
        script.interval = Duration::from_millis(20);
        script.rise = 2;
        script.fall = 2;
        let (stopper, stop) = watch::channel(false);
        let mut state = spawn_script(script, stop);
        // Starts as passing; the missing file makes it fail after two runs.
        until(&mut state, |ok| !ok).await;
        std::fs::write(&flag, "").unwrap();
        until(&mut state, |ok| *ok).await;
        stopper.send_replace(true);
    }

    #[tokio::test]
    async fn track_backend_follows_the_servers_of_the_running_engine() {
        let config = parse(
            "\
backend pg
    server a 127.0.0.1:1
    server b 127.0.0.1:2
vrrp_instance VI_1
    interface lo
    virtual_router_id 51
    advert_int 0.05
    virtual_ipaddress 10.9.0.100/24
    track_backend pg min-up 2 weight -60
    track_interface lo weight -10
",
        );
        let engine = switchyard_engine::Engine::build(&config).await.unwrap();
        let runtime = engine.runtime();
        let current: Arc<dyn Fn() -> Arc<Runtime> + Send + Sync> = {
            let runtime = Arc::clone(&runtime);
            Arc::new(move || Arc::clone(&runtime))
        };
        let (report, mut tracking) = watch::channel(Tracking {
            priority_delta: 1,
            fault: false,
        });
        let (stopper, stop) = watch::channel(false);
        let task = tokio::spawn(track(
            config.vrrp_instances[0].clone(),
            HashMap::new(),
            HashMap::new(),
            current,
            report,
            stop,
        ));
        until(&mut tracking, |t| t.priority_delta == 0).await;
        // A server goes DOWN (health checks would do this): one usable left, below min-up.
        let backend = runtime.backend("pg").unwrap();
        backend.servers.load()[1].up.store(false, Ordering::Relaxed);
        until(&mut tracking, |t| t.priority_delta == -60).await;
        backend.servers.load()[1].up.store(true, Ordering::Relaxed);
        until(&mut tracking, |t| t.priority_delta == 0).await;
        stopper.send_replace(true);
        task.await.unwrap();
    }
}
