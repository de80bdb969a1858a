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

/// Runs a `vrrp_script` every `interval`; publishes its state after `rise` successes or
/// `fall` failures in a row (starting as passing, as keepalived's default).
fn spawn_script(script: VrrpScript, mut stop: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (report, state) = watch::channel(true);
    tokio::spawn(async move {
        let (mut successes, mut failures) = (0u32, 0u32);
        loop {
            let timeout = script.timeout.unwrap_or(script.interval);
            let mut command = tokio::process::Command::new("/bin/sh");
            command.arg("-c").arg(&script.script).kill_on_drop(true);
            let passed = matches!(
                tokio::time::timeout(timeout, command.status()).await,
                Ok(Ok(status)) if status.success()
            );
            if passed {
                successes += 1;
                failures = 0;
                if successes >= script.rise {
                    report.send_if_modified(|ok| !std::mem::replace(ok, true));
                }
            } else {
                failures += 1;
                successes = 0;
                if failures >= script.fall {
                    report.send_if_modified(|ok| std::mem::replace(ok, false));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(script.interval) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    });
    state
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
        let mut tracking = Tracking::default();
        let mut apply = |ok: bool, weight: i32| match (ok, weight) {
            (false, 0) => tracking.fault = true,
            (false, w) if w < 0 => tracking.priority_delta += w,
            (true, w) if w > 0 => tracking.priority_delta += w,
            _ => {}
        };
        for (name, weight) in &v.track_scripts {
            let ok = scripts.get(name).is_none_or(|state| *state.borrow());
            apply(
                ok,
                weight.unwrap_or_else(|| script_weights.get(name).copied().unwrap_or(0)),
            );
        }
        for (interface, weight) in &v.track_interfaces {
            apply(interface_up(interface), *weight);
        }
        let runtime = current();
        for track in &v.track_backends {
            let usable = runtime.backend(&track.backend).map_or(0, |backend| {
                backend.servers.load().iter().filter(|s| s.usable()).count()
            });
            apply(usable >= track.min_up as usize, track.weight);
        }
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
