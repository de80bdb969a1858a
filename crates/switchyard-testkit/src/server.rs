//! What [`crate::PgInstance`] and [`crate::MariaInstance`] share: a database server running out
//! of a temp dir on a loopback port, as a [`ChildGuard`] whose log survives restarts.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::osuser::OsUser;
use crate::process::ChildGuard;
use crate::tmp::TempDir;

/// How [`ServerProcess::shutdown`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shutdown {
    /// There was no running server (never started, or it had already exited).
    NotRunning,
    /// The server exited within the timeout.
    Exited,
    /// The server ignored the signal for the whole timeout and was killed.
    Killed,
}

/// A server process of its own: the temp dir it lives in (`data_dir` is its `data`
/// subdirectory), the OS user it runs as (when the tests run as root), its port on 127.0.0.1,
/// the current run's [`ChildGuard`] and the logs of the earlier runs.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    port: u16,
    user: Option<OsUser>,
    data_dir: PathBuf,
    /// Declared before `dir`: the process is gone before its directory is removed.
    server: Option<ChildGuard>,
    /// Logs of earlier runs (before a stop or kill -9 and a restart).
    old_logs: String,
    dir: TempDir,
}

impl ServerProcess {
    /// Not started yet, port 0; the data directory is `dir/data`.
    pub(crate) fn new(dir: TempDir, user: Option<OsUser>) -> ServerProcess {
        ServerProcess {
            port: 0,
            user,
            data_dir: dir.path().join("data"),
            server: None,
            old_logs: String::new(),
            dir,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    /// `127.0.0.1:port`.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(crate) fn base_dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(ChildGuard::pid)
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// The server's output, including earlier runs.
    pub(crate) fn log(&self) -> String {
        let mut log = self.old_logs.clone();
        if let Some(server) = &self.server {
            log.push_str(&server.output_so_far());
        }
        log
    }

    /// The current run, if one was spawned.
    pub(crate) fn server_mut(&mut self) -> Option<&mut ChildGuard> {
        self.server.as_mut()
    }

    /// A command for `program` in the base dir with `LC_ALL=C` and `HOME` set to the base dir,
    /// run as the server's OS user when there is one.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env("HOME", self.dir.path());
        if let Some(u) = self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd
    }

    /// Before a new run: keeps the previous run's log in the old logs.
    pub(crate) fn retire(&mut self) {
        if let Some(old) = self.server.take() {
            self.old_logs.push_str(&old.output_so_far());
        }
    }

    /// Spawns the server (call [`ServerProcess::retire`] first).
    pub(crate) fn spawn(&mut self, cmd: &mut Command) -> Result<()> {
        self.server = Some(ChildGuard::spawn(cmd)?);
        Ok(())
    }

    /// Sends `signal` to a running server and waits up to `timeout` for it to exit; kills it
    /// (without grace) if it does not.
    pub(crate) fn shutdown(&mut self, signal: i32, timeout: Duration) -> Shutdown {
        let Some(server) = self.server.as_mut() else {
            return Shutdown::NotRunning;
        };
        if server.try_wait().is_some() {
            return Shutdown::NotRunning;
        }
        server.signal(signal);
        if server.wait_timeout(timeout).is_none() {
            server.set_grace(Duration::ZERO);
            server.kill();
            return Shutdown::Killed;
        }
        Shutdown::Exited
    }

    /// Simulates a crash: SIGKILL to the server and its process group, then waits until the port
    /// refuses connections. Fails with `not_running` when there is no server, with `exited` when
    /// it had already exited.
    pub(crate) fn kill9(&mut self, program: &str, not_running: &str, exited: &str) -> Result<()> {
        let Some(server) = self.server.as_mut() else {
            bail!("{not_running}")
        };
        if server.try_wait().is_some() {
            bail!("{exited}");
        }
        server.signal(libc::SIGKILL);
        server.signal_group(libc::SIGKILL);
        server
            .wait_timeout(Duration::from_secs(10))
            .ok_or_else(|| anyhow!("{program} survived SIGKILL?"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
            if Instant::now() >= deadline {
                bail!("port {} still accepts connections after kill -9", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}
