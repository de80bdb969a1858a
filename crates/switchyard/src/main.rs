//! `switchyard`: command line, process lifecycle and wiring of the crates.

mod demo;
mod runtime_api;
mod state_file;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_config::{parse_files, Parsed};
use switchyard_engine::Engine;
use tokio::signal::unix::{signal, SignalKind};

/// High-availability load balancer and proxy for database clusters, configured with
/// HAProxy's configuration language.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Configuration file; may be given several times (read in order, like HAProxy).
    #[arg(short = 'f', value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Check the configuration and exit: 0 if valid, 1 with `FILE:LINE: message` errors.
    #[arg(short = 'c')]
    check: bool,
    /// Quiet: do not print warnings.
    #[arg(short = 'q')]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an embedded demo: the balancer in front of three built-in echo backends.
    Demo {
        /// First port: the balancer listens on PORT and PORT+1, backends on PORT+10..=PORT+12.
        #[arg(long, default_value_t = 8300)]
        port: u16,
        /// Print the generated configuration and exit.
        #[arg(long)]
        print_config: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Some(Command::Demo { port, print_config }) => {
            let text = demo::config(port);
            if print_config {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            let sources = [switchyard_config::Source {
                name: "<demo>".into(),
                text,
            }];
            let parsed = match switchyard_config::parse_sources(&sources) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            run(parsed, Some(port), cli.quiet)
        }
        None => {
            if cli.files.is_empty() {
                eprintln!(
                    "switchyard: no configuration file given (use -f FILE, or `switchyard demo`)"
                );
                return ExitCode::from(2);
            }
            let parsed = match parse_files(&cli.files) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    eprintln!("{errors}");
                    if cli.check {
                        eprintln!("Configuration file has errors.");
                    }
                    return ExitCode::FAILURE;
                }
            };
            if cli.check {
                if !cli.quiet {
                    for warning in &parsed.warnings {
                        eprintln!("{warning}");
                    }
                }
                println!("Configuration file is valid");
                return ExitCode::SUCCESS;
            }
            run(parsed, None, cli.quiet)
        }
    }
}

fn run(parsed: Parsed, demo_port: Option<u16>, quiet: bool) -> ExitCode {
    if !quiet {
        for warning in &parsed.warnings {
            eprintln!("{warning}");
        }
    }
    let threads = parsed
        .config
        .global
        .nbthread
        .map(|n| n as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // One thread: a current-thread runtime does the same work without the work-stealing
    // scheduler's atomics and cross-thread wake-ups (HAProxy's `nbthread 1` model).
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    let runtime = match builder
        .thread_name("switchyard-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchyard: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(parsed, demo_port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(parsed: Parsed, demo_port: Option<u16>) -> anyhow::Result<()> {
    let config = parsed.config;
    if let Some(port) = demo_port {
        demo::start_backends(port)
            .await
            .context("starting the demo backends")?;
    }
    let engine = Engine::build(&config).await?;
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
        .map(|path| Arc::new(state_file::StateFile::new(path)));
    let executor = Arc::new(runtime_api::Executor::new(
        engine.runtime(),
        state_file.clone(),
    ));
    if let Some(file) = &state_file {
        // Before any listener accepts: traffic must never see the pre-restart state.
        for notice in file.restore(&executor, &engine.runtime()).await {
            eprintln!("switchyard: {}: {notice}", file.path().display());
        }
        // Written right away: the file then also records check states and survives a
        // configuration edit that drops changes.
        file.save(&engine.runtime())?;
        tokio::spawn(Arc::clone(file).follow_changes(engine.runtime(), engine.stop_signal()));
    }
    start_stats_sockets(&config, &engine, executor).await?;
    let stopper = engine.stopper();
    let runtime = engine.runtime();
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let engine_task = tokio::spawn(engine.run());

    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    stopper.stop_accepting();
    let _ = engine_task.await;
    let active = stopper.active_sessions();
    if active > 0 {
        eprintln!("switchyard: stopped accepting; waiting for {active} session(s) to finish (signal again to exit now)");
    }
    let hard_stop = config.global.hard_stop_after.unwrap_or(Duration::MAX);
    tokio::select! {
        _ = stopper.drained() => {}
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
        _ = tokio::time::sleep(hard_stop) => {
            eprintln!("switchyard: hard-stop-after expired with {} session(s) left", stopper.active_sessions());
        }
    }
    if let Some(file) = &state_file {
        file.save(&runtime)?;
    }
    Ok(())
}

/// Starts the Runtime API on every `stats socket` of the `global` section.
async fn start_stats_sockets(
    config: &switchyard_config::Config,
    engine: &Engine,
    executor: Arc<runtime_api::Executor>,
) -> anyhow::Result<()> {
    use switchyard_api::command::Level;
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
            SocketAddress::Inet(addr) => Bind::Tcp(*addr),
            SocketAddress::Unix(path) => Bind::Unix {
                path: path.clone(),
                mode: socket.mode,
            },
        };
        let listener = server::Listener::bind(&bind)
            .await
            .with_context(|| format!("{}: cannot bind the stats socket", socket.span))?;
        let options = ServeOptions::new(level);
        let stop = engine.stop_signal();
        let executor = Arc::clone(&executor);
        tokio::spawn(async move {
            if let Err(error) = server::serve_listener(listener, options, executor, stop).await {
                tracing::error!(%error, "stats socket stopped");
            }
        });
    }
    Ok(())
}
