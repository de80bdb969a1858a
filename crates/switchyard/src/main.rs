//! `switchyard`: command line, process lifecycle and wiring of the crates.

mod ctl;
mod demo;
mod ha;
mod handover;
mod lifecycle;
mod process;
mod runtime_api;
mod state_file;

/// mimalloc: per-thread free lists make the allocations of a short connection (task, session
/// state, buffers) markedly cheaper than glibc's malloc; see docs/performance.md for the
/// measured trade (instructions per connection vs. idle memory). Built with `no_thp`: asking
/// for transparent huge pages made RSS grow 2 MiB at a time, ~4.5 MiB more at start, for no
/// measured gain in a proxy's small heap.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lets mimalloc give back to the system the pages freed on this thread since the last call
/// (it purges them once `purge_delay` has passed, but only when the thread next allocates or
/// frees): called by every session thread twice a second, so that memory a burst of
/// connections freed leaves the RSS once the process is idle, not at its next burst.
#[cfg(not(feature = "system-alloc"))]
fn return_freed_memory() {
    // SAFETY: `mi_collect` only walks the calling thread's own heap and the shared arenas,
    // under mimalloc's own locks; it takes no pointer from us.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard_config::{parse_files, Parsed};

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
    /// Run in the background (also `daemon` in `global`); the command returns once
    /// Switchyard listens, with status 1 and the error if it could not start.
    #[arg(short = 'D')]
    daemon: bool,
    /// Stay in the foreground even if the configuration says `daemon` (HAProxy's `-db`).
    #[arg(long = "db", hide = true)]
    foreground: bool,
    /// Write the process id to this file once listening (also `pidfile` in `global`).
    #[arg(short = 'p', value_name = "PIDFILE")]
    pidfile: Option<PathBuf>,
    /// Accepted for HAProxy compatibility (`-W`, `-Ws`): reloads happen inside the process,
    /// no master process is needed, and systemd is notified when `NOTIFY_SOCKET` is set.
    #[arg(short = 'W', hide = true)]
    master_worker: bool,
    /// Once listening, tell these processes to finish their sessions and exit (SIGUSR1),
    /// like HAProxy's `-sf PID...`.
    #[arg(long = "sf", value_name = "PID", num_args = 1.., allow_negative_numbers = false)]
    finish_pids: Vec<i32>,
    /// Once listening, terminate these processes (SIGTERM), like HAProxy's `-st PID...`.
    #[arg(long = "st", value_name = "PID", num_args = 1..)]
    terminate_pids: Vec<i32>,
    /// Take the listening sockets of the running process through its stats socket (which
    /// needs `expose-fd listeners`), so that replacing it (`-sf`) resets no connection.
    #[arg(short = 'x', value_name = "SOCKET")]
    fetch_listeners: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an embedded demo: the balancer in front of three built-in echo backends.
    Demo {
        /// First port: the balancer listens on PORT and PORT+1, the stats page on PORT+2, the
        /// Runtime API on PORT+3, backends on PORT+10..=PORT+12.
        #[arg(long, default_value_t = 8300)]
        port: u16,
        /// Print the generated configuration and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Send a command to a running switchyard's Runtime API (stats socket) and print the
    /// reply as a table, as JSON (--json) or as received (--raw).
    Ctl(ctl::Args),
}

/// HAProxy's single-dash multi-letter options, spelled the way clap reads them.
fn compatible_args() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .map(|arg| match arg.to_str() {
            Some("-sf") => "--sf".into(),
            Some("-st") => "--st".into(),
            Some("-db") => "--db".into(),
            Some("-Ws") => "-W".into(),
            _ => arg,
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(compatible_args());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,netlink_packet_route=error")
            }),
        )
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Some(Command::Ctl(args)) => ctl::run(args),
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
            run(
                lifecycle::ConfigSource::Demo(port),
                parsed,
                cli.quiet,
                process::Startup::new(None, None),
                lifecycle::Replaces::default(),
            )
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
            let global = &parsed.config.global;
            let pidfile = cli.pidfile.clone().or_else(|| global.pidfile.clone());
            let parent = if (cli.daemon || global.daemon) && !cli.foreground {
                match process::daemonize() {
                    Ok(pipe) => Some(pipe),
                    Err(error) => {
                        eprintln!("switchyard: {error:#}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                None
            };
            run(
                lifecycle::ConfigSource::Files(cli.files.clone()),
                parsed,
                cli.quiet,
                process::Startup::new(parent, pidfile),
                lifecycle::Replaces {
                    finish: cli.finish_pids.clone(),
                    terminate: cli.terminate_pids.clone(),
                    fetch_listeners: cli.fetch_listeners.clone(),
                },
            )
        }
    }
}

fn run(
    source: lifecycle::ConfigSource,
    parsed: Parsed,
    quiet: bool,
    startup: process::Startup,
    replaces: lifecycle::Replaces,
) -> ExitCode {
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
    // One single-threaded runtime per thread, as HAProxy's threads: this one (the control
    // plane, the accept loops and a share of the sessions) and `nbthread - 1` others, each
    // keeping the sessions handed to it for their whole life (switchyard_engine::workers).
    #[cfg(not(feature = "system-alloc"))]
    switchyard_engine::set_thread_housekeeping(return_freed_memory);
    // Yielding before sleep helps when peers share the proxy's CPUs; `off` is for comparing.
    if let Some(value) = std::env::var_os("SWITCHYARD_PARK_YIELD") {
        switchyard_engine::park::set_enabled(!matches!(value.to_str(), Some("off" | "0" | "no")));
    }
    if let Err(error) = switchyard_engine::workers::start(threads.saturating_sub(1)) {
        eprintln!("switchyard: cannot start {threads} threads: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match switchyard_engine::workers::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchyard: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Idle unless `busy-polling` is on (then this thread never sleeps, as the others).
    runtime.spawn(switchyard_engine::busy::run());
    match runtime.block_on(lifecycle::serve(source, parsed, startup, replaces)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}
