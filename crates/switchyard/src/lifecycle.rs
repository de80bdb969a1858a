//! Process lifecycle: start, reload (SIGHUP, SIGUSR2, `reload` on an admin socket) and
//! graceful stop (SIGTERM, SIGINT).
//!
//! A reload happens inside the process: the new configuration is parsed and built while
//! the old engine keeps serving; if anything fails, the old one simply continues. The new
//! engine shares the old one's listening sockets (no connection is refused in between) and
//! its unchanged servers (health, admin states and sessions carry over); then the old
//! engine stops accepting and drains its sessions, bounded by `hard-stop-after`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use switchyard_api::command::{Command, Level};
use switchyard_config::{Config, Parsed};
use switchyard_engine::{Engine, Runtime, Stopper};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::demo;
use crate::process::{self, Startup};
use crate::runtime_api::Executor;
use crate::state_file::StateFile;

/// Where the configuration comes from, so a reload can read it again.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    Files(Vec<PathBuf>),
    Demo(u16),
}

impl ConfigSource {
    pub fn parse(&self) -> Result<Parsed, String> {
        match self {
            ConfigSource::Files(files) => {
                switchyard_config::parse_files(files).map_err(|e| e.to_string())
            }
            ConfigSource::Demo(port) => {
                let sources = [switchyard_config::Source {
                    name: "<demo>".into(),
                    text: demo::config(*port),
                }];
                switchyard_config::parse_sources(&sources).map_err(|e| e.to_string())
            }
        }
    }
}

/// Processes this one replaces once it listens (`-sf`, `-st`).
#[derive(Debug, Default)]
pub struct Replaces {
    pub finish: Vec<i32>,
    pub terminate: Vec<i32>,
    /// `-x SOCKET`: take the listening sockets of the process behind this stats socket.
    pub fetch_listeners: Option<PathBuf>,
}

/// The engine currently accepting connections.
struct Live {
    runtime: Arc<Runtime>,
    stopper: Stopper,
    accepting: JoinHandle<()>,
    config: Config,
}

impl Live {
    fn start(engine: Engine, config: Config) -> Live {
        // The configuration in force decides, through reloads.
        switchyard_engine::busy::set(config.global.busy_polling);
        Live {
            runtime: engine.runtime(),
            stopper: engine.stopper(),
            accepting: tokio::spawn(engine.run()),
            config,
        }
    }
}

/// The Runtime API's view of the process: commands go to the current engine's executor,
/// which a reload swaps; `reload` itself goes to the lifecycle loop.
pub struct Control {
    current: ArcSwap<Executor>,
    reloads: mpsc::Sender<oneshot::Sender<String>>,
}

impl switchyard_api::server::Executor for Control {
    async fn execute(&self, command: Command, level: Level) -> String {
        if let Command::Reload = command {
            let (reply, answer) = oneshot::channel();
            if self.reloads.send(reply).await.is_err() {
                return "Success=0\n--\nthe process is stopping\n".into();
            }
            return answer
                .await
                .unwrap_or_else(|_| "Success=0\n--\nthe process is stopping\n".into());
        }
        let executor = self.current.load_full();
        switchyard_api::server::Executor::execute(&*executor, command, level).await
    }

    fn hand_over_listeners(&self, stream: std::os::fd::RawFd) -> std::io::Result<bool> {
        let runtime = self.current.load().runtime();
        crate::handover::send(stream, &runtime.listening_fds())?;
        Ok(true)
    }
}

pub async fn serve(
    source: ConfigSource,
    parsed: Parsed,
    mut startup: Startup,
    replaces: Replaces,
) -> anyhow::Result<()> {
    let result = serve_until_stopped(source, parsed, &mut startup, replaces).await;
    if let Err(error) = &result {
        startup.failed(&format!("{error:#}"));
        // A clean stop said STOPPING when it began; a failure says it now.
        process::notify(&[sd_notify::NotifyState::Stopping]);
    }
    startup.exiting();
    result
}

async fn serve_until_stopped(
    source: ConfigSource,
    parsed: Parsed,
    startup: &mut Startup,
    replaces: Replaces,
) -> anyhow::Result<()> {
    let config = parsed.config;
    let demo_port = match source {
        ConfigSource::Demo(port) => Some(port),
        ConfigSource::Files(_) => None,
    };
    if let Some(port) = demo_port {
        demo::start_backends(port)
            .await
            .context("starting the demo backends")?;
    }
    let engine = match &replaces.fetch_listeners {
        Some(path) => {
            let sockets = crate::handover::fetch(path)?;
            tracing::info!(count = sockets.len(), "listening sockets received");
            Engine::build_inheriting(&config, sockets).await?
        }
        None => Engine::build(&config).await?,
    };
    if let Some(port) = demo_port {
        demo::print_banner(port);
    }
    for (frontend, addr) in engine.local_addrs() {
        tracing::info!(%frontend, %addr, "listening");
    }
    let state_file = config
        .global
        .runtime_state_file
        .clone()
        .map(|path| Arc::new(StateFile::new(path)));
    let executor = Arc::new(Executor::new(engine.runtime(), state_file.clone()));
    // Stats sockets outlive engines: they stop with the process, not with a reload.
    let (process_stop, process_stopping) = watch::channel(false);
    if let Some(file) = &state_file {
        // Before any listener accepts: traffic must never see the pre-restart state.
        for notice in file.restore(&executor, &engine.runtime()).await {
            eprintln!("switchyard: {}: {notice}", file.path().display());
        }
        // Written right away: the file then also records check states and survives a
        // configuration edit that drops changes.
        file.save(&engine.runtime())?;
    }
    let (reload_requests, mut reloads) = mpsc::channel(4);
    let control = Arc::new(Control {
        current: ArcSwap::new(executor),
        reloads: reload_requests,
    });
    if let Some(file) = &state_file {
        let control = Arc::clone(&control);
        let current = move || control.current.load().runtime();
        tokio::spawn(Arc::clone(file).follow_changes(current, process_stopping.clone()));
    }
    let replacing = replaces.fetch_listeners.is_some();
    start_stats_sockets(&config, &process_stopping, &control, replacing).await?;
    start_stats_pages(&config, &process_stopping, &control)?;

    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut user2 = signal(SignalKind::user_defined2()).context("installing SIGUSR2 handler")?;
    // HAProxy's soft stop: what `-sf` sends to the process being replaced.
    let mut user1 = signal(SignalKind::user_defined1()).context("installing SIGUSR1 handler")?;
    let mut live = Live::start(engine, config);
    startup.ready()?;
    // Virtual addresses are claimed only once this process serves them.
    let vrrp = {
        let control = Arc::clone(&control);
        crate::ha::start(
            &live.config,
            Arc::new(move || control.current.load().runtime()),
            &process_stopping,
        )
    };
    process::signal_previous(&replaces.finish, true);
    process::signal_previous(&replaces.terminate, false);
    let mut draining = JoinSet::new();
    loop {
        let reply = tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = user1.recv() => break,
            _ = hangup.recv() => None,
            _ = user2.recv() => None,
            Some(reply) = reloads.recv() => Some(reply),
        };
        process::notify_reloading();
        let outcome = reload(
            &source,
            &mut live,
            &control,
            state_file.as_deref(),
            &mut draining,
        )
        .await;
        process::notify(&[sd_notify::NotifyState::Ready]);
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }

    // systemd wants STOPPING when the shutdown begins, not once sessions have drained.
    process::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(grace) = live.config.global.grace {
        eprintln!("switchyard: stopping in {grace:?} (grace); signal again to stop now");
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            _ = user1.recv() => {}
        }
    }
    let _ = process_stop.send(true);
    // A draining process must not hold CPUs spinning (HAProxy's soft stop does the same).
    switchyard_engine::busy::set(false);
    // A master resigns first (priority 0): the backup takes the addresses within its skew
    // time while this process drains.
    for task in vrrp {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    live.stopper.stop_accepting();
    let _ = live.accepting.await;
    // Closed, not just unattended: new connections are refused rather than left waiting.
    live.runtime.release_listeners();
    let hard_stop = live.config.global.hard_stop_after.unwrap_or(Duration::MAX);
    let active = live.stopper.active_sessions();
    if active > 0 {
        eprintln!("switchyard: stopped accepting; waiting for {active} session(s) to finish (signal again to exit now)");
    }
    let drained = async {
        live.stopper.drained().await;
        while draining.join_next().await.is_some() {}
    };
    tokio::select! {
        _ = drained => {}
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
        _ = tokio::time::sleep(hard_stop) => {
            eprintln!("switchyard: hard-stop-after expired with {} session(s) left", live.stopper.active_sessions());
        }
    }
    if let Some(file) = &state_file {
        file.save(&live.runtime)?;
    }
    Ok(())
}

/// Reloads the configuration; returns the answer for the CLI in the form of HAProxy's
/// master CLI (`Success=1|0`, `--`, then the messages of the attempt).
async fn reload(
    source: &ConfigSource,
    live: &mut Live,
    control: &Control,
    state_file: Option<&StateFile>,
    draining: &mut JoinSet<()>,
) -> String {
    let refused = |messages: String| {
        eprintln!(
            "switchyard: reload refused, still running the previous configuration:\n{messages}"
        );
        format!("Success=0\n--\n{messages}\n")
    };
    let parsed = match source.parse() {
        Ok(parsed) => parsed,
        Err(errors) => return refused(errors),
    };
    let mut messages: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
    let engine = match Engine::reload(&parsed.config, &live.runtime).await {
        Ok(engine) => engine,
        Err(error) => return refused(format!("{error:#}")),
    };
    messages.extend(engine.notices().iter().cloned());
    if stats_sockets(&parsed.config) != stats_sockets(&live.config) {
        messages.push(
            "warning: 'stats socket' changes take effect at the next restart; the sockets \
             in use are kept"
                .into(),
        );
    }
    if stats_pages(&parsed.config) != stats_pages(&live.config) {
        messages.push(
            "warning: stats page changes (its section, 'bind' and 'stats' lines) take effect \
             at the next restart; the pages in use are kept"
                .into(),
        );
    }
    control.current.store(Arc::new(Executor::new(
        engine.runtime(),
        state_file_arc(control),
    )));
    let old = std::mem::replace(live, Live::start(engine, parsed.config));
    // Both engines accept on the shared sockets for a moment; then the old one stops.
    old.stopper.stop_accepting();
    let _ = old.accepting.await;
    old.runtime.release_listeners();
    let hard_stop = live.config.global.hard_stop_after;
    draining.spawn(drain(old.stopper, hard_stop));
    if let Some(file) = state_file {
        if let Err(error) = file.save(&live.runtime) {
            messages.push(format!("{error:#}"));
        }
    }
    for message in &messages {
        eprintln!("switchyard: reload: {message}");
    }
    eprintln!("switchyard: configuration reloaded");
    let mut answer = "Success=1\n--\n".to_string();
    for message in messages {
        answer.push_str(&message);
        answer.push('\n');
    }
    answer
}

/// What identifies the stats sockets of a configuration (not where they are written).
fn stats_sockets(config: &Config) -> Vec<String> {
    config
        .global
        .stats_sockets
        .iter()
        .map(|s| format!("{:?} {:?} {:?}", s.address, s.level, s.mode))
        .collect()
}

fn state_file_arc(control: &Control) -> Option<Arc<StateFile>> {
    control.current.load().state_file()
}

/// Lets a reloaded-away engine finish its sessions, closing what is left when
/// `hard-stop-after` expires.
async fn drain(stopper: Stopper, hard_stop: Option<Duration>) {
    let Some(limit) = hard_stop else {
        stopper.drained().await;
        return;
    };
    if tokio::time::timeout(limit, stopper.drained())
        .await
        .is_err()
    {
        let closed = stopper.kill_remaining();
        eprintln!(
            "switchyard: hard-stop-after expired: closing {closed} session(s) of the previous configuration"
        );
        stopper.drained().await;
    }
}

/// Starts the Runtime API on every `stats socket` of the `global` section.
async fn start_stats_sockets(
    config: &Config,
    stop: &watch::Receiver<bool>,
    control: &Arc<Control>,
    replacing: bool,
) -> anyhow::Result<()> {
    use switchyard_api::server::{self, Bind, ServeOptions};
    use switchyard_config::SocketAddress;

    for socket in &config.global.stats_sockets {
        // HAProxy's default level for a stats socket is "operator".
        let level = match socket.level.as_deref() {
            Some("user") => Level::User,
            Some("admin") => Level::Admin,
            _ => Level::Operator,
        };
        let bind = match &socket.address {
            SocketAddress::Inet(addr) => Bind::Tcp {
                addr: *addr,
                reuse_port: !config.global.noreuseport,
            },
            SocketAddress::Unix(path) => Bind::Unix {
                path: path.clone(),
                mode: socket.mode,
            },
        };
        // A process replacing another (`-x`) takes its unix socket paths over.
        let listener = if replacing {
            server::Listener::bind_replacing(&bind).await
        } else {
            server::Listener::bind(&bind).await
        }
        .with_context(|| format!("{}: cannot bind the stats socket", socket.span))?;
        let mut options = ServeOptions::new(level);
        options.expose_listeners = matches!(socket.address, SocketAddress::Unix(_))
            && socket
                .params
                .windows(2)
                .any(|w| w == ["expose-fd", "listeners"]);
        let stop = stop.clone();
        let control = Arc::clone(control);
        tokio::spawn(async move {
            if let Err(error) = server::serve_listener(listener, options, control, stop).await {
                tracing::error!(%error, "stats socket stopped");
            }
        });
    }
    Ok(())
}

/// The stats page and the Prometheus exporter read the current engine (a reload swaps it)
/// and run admin actions through its executor, like the stats socket at level admin.
impl switchyard_stats::Source for Control {
    fn stats(&self) -> switchyard_api::model::Stats {
        self.current.load().stats_snapshot()
    }

    fn info(&self) -> switchyard_api::model::Info {
        self.current.load().info_snapshot()
    }

    async fn execute(&self, command: Command) -> String {
        let executor = self.current.load_full();
        switchyard_api::server::Executor::execute(&*executor, command, Level::Admin).await
    }
}

/// Starts the HTTP listeners of the stats-only proxies (`stats enable`, `http-request
/// use-service prometheus-exporter`). Like the stats sockets they stop with the process, not
/// with a reload, and always serve the current engine.
fn start_stats_pages(
    config: &Config,
    stop: &watch::Receiver<bool>,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    use switchyard_config::SocketAddress;

    for proxy in config
        .proxies
        .iter()
        .filter(|p| p.is_stats_only() && !p.disabled)
    {
        let settings = switchyard_stats::Settings::from_proxy(proxy)
            .map_err(|error| anyhow::anyhow!("{}: {error}", proxy.span))?;
        for bind in &proxy.binds {
            for address in &bind.addresses {
                let SocketAddress::Inet(addr) = address else {
                    anyhow::bail!(
                        "{}: unix listeners are not supported for the stats page yet",
                        bind.span
                    );
                };
                let listener = switchyard_stats::bind(*addr, !config.global.noreuseport)
                    .with_context(|| {
                        format!("{}: cannot bind {addr} for '{}'", bind.span, proxy.name)
                    })?;
                tracing::info!(proxy = %proxy.name, %addr, "stats page listening");
                tokio::spawn(switchyard_stats::serve(
                    listener,
                    settings.clone(),
                    Arc::clone(control),
                    stop.clone(),
                ));
            }
        }
    }
    Ok(())
}

/// What identifies the stats pages of a configuration: a change needs a restart.
fn stats_pages(
    config: &Config,
) -> Vec<(
    Vec<switchyard_config::SocketAddress>,
    Result<switchyard_stats::Settings, String>,
)> {
    config
        .proxies
        .iter()
        .filter(|p| p.is_stats_only() && !p.disabled)
        .map(|p| {
            (
                p.binds.iter().flat_map(|b| b.addresses.clone()).collect(),
                switchyard_stats::Settings::from_proxy(p),
            )
        })
        .collect()
}
