//! Process management an init system expects: daemon mode (`-D`, `daemon`), a pid file
//! (`-p`, `pidfile`), systemd's notify protocol (`Type=notify`: READY, RELOADING, STOPPING),
//! and signalling the processes a new one replaces (`-sf`/`-st`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, setsid, ForkResult, Pid};

/// Reports the outcome of start-up to whoever waits for it: the parent of a daemon (which
/// exits with it) and systemd. Dropped without `ready`, it reports a failure.
pub struct Startup {
    /// Write end of the pipe the daemon's parent reads.
    parent: Option<std::fs::File>,
    pidfile: Option<PathBuf>,
}

impl Startup {
    pub fn new(parent: Option<OwnedFd>, pidfile: Option<PathBuf>) -> Self {
        Startup {
            parent: parent.map(std::fs::File::from),
            pidfile,
        }
    }

    /// Everything is listening: write the pid file, release the parent, tell systemd.
    pub fn ready(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.pidfile {
            write_pidfile(path)?;
        }
        if let Some(mut parent) = self.parent.take() {
            let _ = parent.write_all(b"ok");
            detach_stdio();
        }
        notify(&[sd_notify::NotifyState::Ready]);
        Ok(())
    }

    /// Start-up failed: the daemon's parent prints `error` and exits 1.
    pub fn failed(&mut self, error: &str) {
        if let Some(mut parent) = self.parent.take() {
            let _ = parent.write_all(error.as_bytes());
        }
    }

    /// Removes the pid file if it is still ours (a process that replaced this one with
    /// `-sf` has written its own).
    pub fn exiting(&self) {
        if let Some(path) = &self.pidfile {
            let ours = std::fs::read_to_string(path)
                .is_ok_and(|text| text.trim() == std::process::id().to_string());
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Forks into the background before anything else starts (threads cannot survive `fork`).
/// The parent waits until the child is listening, then exits 0, or prints the child's
/// start-up error and exits 1; returns in the child, with the pipe to report through.
pub fn daemonize() -> anyhow::Result<OwnedFd> {
    let (read_end, write_end) = nix::unistd::pipe().context("creating the daemon pipe")?;
    // SAFETY: called from `main` before the tokio runtime or any other thread exists, so
    // the child's only thread is this one and it may run arbitrary code.
    match unsafe { fork() }.context("forking the daemon")? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut report = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut report);
            if report == "ok" {
                std::process::exit(0);
            }
            if report.is_empty() {
                report = format!("the daemon (pid {child}) exited during start-up");
            }
            eprintln!("switchyard: {report}");
            std::process::exit(1);
        }
        ForkResult::Child => {
            drop(read_end);
            setsid().context("detaching from the terminal")?;
            Ok(write_end)
        }
    }
}

/// Points stdin/stdout/stderr at /dev/null once the daemon runs on its own: a closed
/// terminal must not make its writes fail.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

fn write_pidfile(path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write the pid file {}", path.display()))
}

/// systemd's notify protocol; a no-op when not started by systemd (`NOTIFY_SOCKET` unset).
pub fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// systemd wants a reload framed by RELOADING=1 (with the monotonic time) and READY=1.
pub fn notify_reloading() {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0);
    let stamp = format!("MONOTONIC_USEC={now}");
    notify(&[
        sd_notify::NotifyState::Reloading,
        sd_notify::NotifyState::Custom(&stamp),
    ]);
}

/// `-sf PID...` (finish: SIGUSR1, the old processes stop accepting and drain) or
/// `-st PID...` (terminate: SIGTERM), once this process is listening.
pub fn signal_previous(pids: &[i32], finish: bool) {
    let signal = if finish {
        Signal::SIGUSR1
    } else {
        Signal::SIGTERM
    };
    for &pid in pids {
        if let Err(error) = kill(Pid::from_raw(pid), signal) {
            eprintln!("switchyard: cannot signal the previous process {pid}: {error}");
        }
    }
    if !finish && !pids.is_empty() {
        // `-st` means "terminate now" (HAProxy closes its sessions on SIGTERM). A Switchyard
        // process drains on its first SIGTERM and exits at the next one, so repeat it while
        // the old process lives (bounded: pids get reused).
        let pids = pids.to_vec();
        std::thread::spawn(move || {
            for _ in 0..50 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let alive: Vec<Pid> = pids
                    .iter()
                    .map(|&pid| Pid::from_raw(pid))
                    .filter(|&pid| kill(pid, None).is_ok())
                    .collect();
                if alive.is_empty() {
                    return;
                }
                for pid in alive {
                    let _ = kill(pid, Signal::SIGTERM);
                }
            }
        });
    }
}
