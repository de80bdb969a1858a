//! Supervised child processes.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::tmp::TempDir;

/// A spawned process that is killed when dropped.
///
/// * stdin is `/dev/null`; stdout and stderr go to `stdout.log` / `stderr.log` in a private temp
///   dir ([`ChildGuard::log_dir`]), readable at any time with [`ChildGuard::output_so_far`].
/// * The child leads its own process group; on drop (or [`ChildGuard::kill`]) the whole group gets
///   SIGTERM, then SIGKILL after a grace period (default 2 s), so grandchildren go too.
/// * The child gets `PR_SET_PDEATHSIG = SIGKILL`: if the test process dies without running
///   destructors (a nextest timeout, a SIGKILL), the child dies with it. Linux ties this to the
///   *thread* that spawned it; use [`ChildGuard::spawn_no_pdeathsig`] for a process that must
///   outlive a helper thread.
/// * If the guard is dropped while the thread is panicking (a failed assertion), the tail of the
///   output is printed to stderr for diagnosis.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    status: Option<ExitStatus>,
    program: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    grace: Duration,
    dir: TempDir,
}

impl ChildGuard {
    /// Spawns `cmd` (its stdin/stdout/stderr settings are replaced, see the type docs).
    pub fn spawn(cmd: &mut Command) -> Result<ChildGuard> {
        Self::spawn_inner(cmd, true)
    }

    /// Like [`ChildGuard::spawn`] but without the parent-death signal.
    pub fn spawn_no_pdeathsig(cmd: &mut Command) -> Result<ChildGuard> {
        Self::spawn_inner(cmd, false)
    }

    fn spawn_inner(cmd: &mut Command, pdeathsig: bool) -> Result<ChildGuard> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let short = Path::new(&program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = TempDir::new(&format!("switchyard-child-{}", sanitize(&short)))?;
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let stdout = std::fs::File::create(&stdout_path).context("creating stdout.log")?;
        let stderr = std::fs::File::create(&stderr_path).context("creating stderr.log")?;
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        if pdeathsig {
            // SAFETY: getpid before fork; only async-signal-safe calls in the child.
            let parent = unsafe { libc::getpid() };
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        libc::_exit(1); // the parent is already gone
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().with_context(|| format!("spawning {program}"))?;
        Ok(ChildGuard {
            child,
            status: None,
            program,
            stdout_path,
            stderr_path,
            grace: Duration::from_secs(2),
            dir,
        })
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How long [`ChildGuard::kill`] and drop wait between SIGTERM and SIGKILL.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) to the process. Returns false if it has already been
    /// reaped (the pid may belong to someone else by now) or `kill(2)` failed.
    pub fn signal(&self, sig: i32) -> bool {
        if self.status.is_some() {
            return false;
        }
        // SAFETY: plain kill(2).
        unsafe { libc::kill(self.pid() as libc::pid_t, sig) == 0 }
    }

    /// Sends `sig` to the child's whole process group (the child and what it spawned).
    pub fn signal_group(&self, sig: i32) -> bool {
        if self.status.is_some() {
            return false;
        }
        // SAFETY: plain kill(2) on our own process group.
        unsafe { libc::kill(-(self.pid() as libc::pid_t), sig) == 0 }
    }

    /// The exit status if the process has exited (reaping it), else None.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits up to `timeout` for the process to exit; None if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM to the process group, SIGKILL after the grace period; returns the exit status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        self.signal_group(libc::SIGTERM);
        if let Some(status) = self.wait_timeout(self.grace) {
            // Leftover group members (grandchildren ignoring SIGTERM) go too.
            // SAFETY: plain kill(2); the group id cannot have been reused yet in practice.
            unsafe { libc::kill(-(self.pid() as libc::pid_t), libc::SIGKILL) };
            return status;
        }
        self.signal_group(libc::SIGKILL);
        let status = self
            .child
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(libc::SIGKILL));
        self.status = Some(status);
        status
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// stdout followed by stderr, as written so far.
    pub fn output_so_far(&self) -> String {
        let mut out = self.stdout_so_far();
        out.push_str(&self.stderr_so_far());
        out
    }

    /// Waits until stdout or stderr contains `needle`. Fails (with the output in the message) on
    /// timeout or if the process exits first.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output_so_far().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.try_wait() {
                if self.output_so_far().contains(needle) {
                    return Ok(());
                }
                bail!(
                    "{} exited ({status}) without printing {needle:?}; output:\n{}",
                    self.program,
                    self.output_so_far()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}; output:\n{}",
                    self.program,
                    self.output_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The directory holding `stdout.log` and `stderr.log`.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let was_running = self.is_running();
        if was_running {
            self.kill();
        }
        if std::thread::panicking() {
            let out = self.output_so_far();
            let tail: String = {
                let start = out.len().saturating_sub(4000);
                let start = (start..out.len())
                    .find(|i| out.is_char_boundary(*i))
                    .unwrap_or(out.len());
                out[start..].to_string()
            };
            eprintln!(
                "---- output of {} (pid {}, {}) ----\n{tail}\n---- end of output ----",
                self.program,
                self.pid(),
                if was_running {
                    "killed by the test harness".to_string()
                } else {
                    format!("{:?}", self.status)
                },
            );
        }
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(24)
        .collect()
}

/// Runs `promtool check metrics` on an exposition: whether it passed, and everything it said
/// (lint findings included). Panics if promtool cannot be run: callers check for it first.
pub fn promtool_check(metrics: &str) -> (bool, String) {
    let dir = TempDir::new("switchyard-promtool").expect("a temp dir for promtool");
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, metrics).expect("writing the metrics for promtool");
    let out = run_with_timeout(
        Command::new("sh")
            .arg("-c")
            .arg(format!("promtool check metrics < '{}'", file.display())),
        Duration::from_secs(60),
    )
    .expect("running promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A process's open descriptors and resident memory in KiB (`/proc/PID/fd`, `VmRSS`), for
/// leak and memory checks; zeros when the process is gone.
pub fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// Runs `cmd` to completion with piped output, killing it (SIGKILL) if it takes longer than
/// `timeout`. A non-zero exit is *not* an error here; inspect `Output::status`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            bail!(
                "{program} did not finish within {timeout:?}; stdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Calls `probe` every 20 ms until `done` accepts its answer or `timeout` has passed; the
/// last answer. For what a process reports asynchronously (log lines, a state change).
pub fn poll_until<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = probe();
        if done(&answer) || Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True if `name` is an executable file in a `$PATH` directory (or an existing path itself).
pub fn have_command(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return executable(Path::new(name));
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| executable(&dir.join(name))))
        .unwrap_or(false)
}

/// Whether the tests run in CI (`CI` set, and not empty, `0` or `false`; CI runs with
/// `CI=true`). There scripts/ensure-deps.sh has installed every tool the tests use, so a
/// missing one is an error rather than a reason to skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A tool a test needs is missing (`reason` says which and how to install it): panics in CI,
/// where a test must not pass without doing its work; elsewhere prints `SKIP: reason`.
pub fn tool_missing(reason: &str) {
    assert!(
        !in_ci(),
        "{reason}, and CI is set: in CI this test must run, not skip"
    );
    eprintln!("SKIP: {reason}");
}

/// For a test that needs `command` (from the Debian package `package`): true if it is on
/// `PATH`; otherwise reported through [`tool_missing`] (a panic in CI) and false, so the
/// caller returns early.
pub fn require_command(command: &str, package: &str) -> bool {
    let found = have_command(command);
    if !found {
        tool_missing(&format!(
            "{command} is not installed (Debian package '{package}'; scripts/ensure-deps.sh \
             installs it)"
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exists and is not a zombie (containers may lack an init that reaps orphans).
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
                .unwrap_or(true),
            Err(_) => false,
        }
    }

    #[test]
    fn captures_output_and_exit_status() {
        let mut child =
            ChildGuard::spawn(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
                .unwrap();
        let status = child
            .wait_timeout(Duration::from_secs(10))
            .expect("sh exits");
        assert_eq!(status.code(), Some(3));
        assert_eq!(child.stdout_so_far(), "out\n");
        assert_eq!(child.stderr_so_far(), "err\n");
        assert_eq!(child.output_so_far(), "out\nerr\n");
        assert!(!child.signal(libc::SIGTERM), "no signals to a reaped pid");
    }

    #[test]
    fn kills_the_process_group_on_drop() {
        // A shell that ignores SIGTERM and has a grandchild: both must be gone after drop.
        let mut guard = ChildGuard::spawn(
            Command::new("sh").args(["-c", "trap '' TERM; sleep 300 & echo $!; wait; sleep 300"]),
        )
        .unwrap();
        guard.set_grace(Duration::from_millis(300));
        guard
            .wait_for_output("\n", Duration::from_secs(10))
            .unwrap();
        let pid = guard.pid();
        let grandchild: u32 = guard.stdout_so_far().trim().parse().unwrap();
        assert!(alive(pid) && alive(grandchild));
        let start = Instant::now();
        drop(guard);
        assert!(start.elapsed() < Duration::from_secs(5));
        // The grandchild is reparented (init reaps it); give that a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(grandchild), "grandchild {grandchild} survived");
    }

    #[test]
    fn signal_and_wait_timeout() {
        let mut child = ChildGuard::spawn(Command::new("sleep").arg("300")).unwrap();
        assert!(child.wait_timeout(Duration::from_millis(100)).is_none());
        assert!(child.is_running());
        assert!(child.signal(libc::SIGTERM));
        let status = child
            .wait_timeout(Duration::from_secs(10))
            .expect("sleep dies on SIGTERM");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn wait_for_output_fails_when_the_process_exits() {
        let mut child = ChildGuard::spawn(Command::new("sh").args(["-c", "echo nope"])).unwrap();
        let err = child
            .wait_for_output("ready", Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn run_with_timeout_kills_slow_commands() {
        let out = run_with_timeout(
            Command::new("sh").args(["-c", "echo hi"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        let start = Instant::now();
        assert!(
            run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200)).is_err()
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(have_command("sh"));
        assert!(!have_command("definitely-not-a-command-xyz"));
    }
}
