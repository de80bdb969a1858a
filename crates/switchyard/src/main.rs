//! `switchyard`: command line, process lifecycle and wiring of the crates.

mod demo;
mod lifecycle;
mod runtime_api;
mod state_file;

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
            run(lifecycle::ConfigSource::Demo(port), parsed, cli.quiet)
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
            run(
                lifecycle::ConfigSource::Files(cli.files.clone()),
                parsed,
                cli.quiet,
            )
        }
    }
}

fn run(source: lifecycle::ConfigSource, parsed: Parsed, quiet: bool) -> ExitCode {
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
    match runtime.block_on(lifecycle::serve(source, parsed)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}
