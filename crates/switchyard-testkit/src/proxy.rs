//! The real `switchyard` binary under test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{run_with_timeout, ChildGuard};
use crate::tmp::TempDir;

const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(15);

/// The addresses to probe for every `bind` line of an HAProxy-syntax config: `bind
/// 127.0.0.1:5000`, `bind *:5000`, `bind :5000`, `bind [::1]:5000`, `bind :::5000`, comma lists and
/// port ranges (`:5000-5002`). Wildcards map to the loopback address of their family. Lines
/// with unparsable addresses (unix sockets, environment variables) are skipped.
pub fn bind_ports(config: &str) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for line in config.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("bind") {
            continue;
        }
        let Some(spec) = words.next() else { continue };
        for item in spec.split(',') {
            let Some((host, ports)) = item.rsplit_once(':') else {
                continue;
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = match host {
                "" | "*" | "0.0.0.0" => Ipv4Addr::LOCALHOST.into(),
                "::" => Ipv6Addr::LOCALHOST.into(),
                h => match h.parse() {
                    Ok(ip) => ip,
                    Err(_) => continue,
                },
            };
            let (lo, hi) = match ports.split_once('-') {
                Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                None => (ports.parse(), ports.parse()),
            };
            if let (Ok(lo), Ok(hi)) = (lo, hi) {
                addrs.extend((lo..=hi).map(|p| SocketAddr::new(ip, p)));
            }
        }
    }
    addrs
}

/// A running `switchyard -f <config>` (killed on drop; the config file lives in a temp dir).
#[derive(Debug)]
pub struct Switchyard {
    child: ChildGuard,
    config_path: PathBuf,
    frontends: Vec<SocketAddr>,
    _dir: TempDir,
}

impl Switchyard {
    /// Writes `config` to a file, runs `bin -f FILE` and waits (15 s at most) until every
    /// `bind` address in the config accepts connections. `bin` is normally
    /// `env!("CARGO_BIN_EXE_switchyard")`.
    pub fn start(bin: impl AsRef<Path>, config: &str) -> Result<Switchyard> {
        Self::start_with(bin, config, &[], None)
    }

    /// Like [`Switchyard::start`], with its diagnostics filtered by `log_filter` (the
    /// `SWITCHYARD_LOG` variable, e.g. `warn,switchyard_engine::session=debug`) on stderr.
    pub fn start_logging(
        bin: impl AsRef<Path>,
        config: &str,
        log_filter: &str,
    ) -> Result<Switchyard> {
        Self::spawn(bin, config, &[], None, Some(log_filter))
    }

    /// Like [`Switchyard::start`], with extra command-line arguments after `-f FILE` and an
    /// explicit list of ports to wait for on 127.0.0.1 (None: the config's `bind` lines; an empty
    /// slice: do not wait).
    pub fn start_with(
        bin: impl AsRef<Path>,
        config: &str,
        extra_args: &[&str],
        wait_ports: Option<&[u16]>,
    ) -> Result<Switchyard> {
        Self::spawn(bin, config, extra_args, wait_ports, None)
    }

    fn spawn(
        bin: impl AsRef<Path>,
        config: &str,
        extra_args: &[&str],
        wait_ports: Option<&[u16]>,
        log_filter: Option<&str>,
    ) -> Result<Switchyard> {
        let dir = TempDir::new("switchyard-cfg")?;
        let config_path = dir.path().join("switchyard.cfg");
        std::fs::write(&config_path, config).context("writing the config")?;
        let frontends = match wait_ports {
            Some(ports) => ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
            None => bind_ports(config),
        };
        let mut cmd = Command::new(bin.as_ref());
        cmd.arg("-f")
            .arg(&config_path)
            .args(extra_args)
            .current_dir(dir.path());
        if let Some(filter) = log_filter {
            cmd.env("SWITCHYARD_LOG", filter);
        }
        let child = ChildGuard::spawn(&mut cmd)?;
        let mut sy = Switchyard {
            child,
            config_path,
            frontends,
            _dir: dir,
        };
        sy.wait_ready(DEFAULT_START_TIMEOUT)?;
        Ok(sy)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for addr in self.frontends.clone() {
            loop {
                if let Some(status) = self.child.try_wait() {
                    bail!("switchyard exited ({status}) before {addr} accepted connections; output:\n{}", self.output_so_far());
                }
                // Not by connecting: that would be a session (and, in HTTP, a logged and
                // counted request) of its own.
                let listening = crate::ports::is_listening(addr).unwrap_or_else(|| {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                });
                if listening {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("switchyard did not accept connections on {addr} within {timeout:?}; output:\n{}", self.output_so_far());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The addresses that were waited for.
    pub fn frontends(&self) -> &[SocketAddr] {
        &self.frontends
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`); see [`ChildGuard::signal`].
    pub fn signal(&self, sig: i32) -> bool {
        self.child.signal(sig)
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_timeout(timeout)
    }

    /// SIGTERM, then waits up to `timeout` for a (graceful) exit; None if it is still running.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.signal(libc::SIGTERM);
        self.child.wait_timeout(timeout)
    }

    pub fn stdout_so_far(&self) -> String {
        self.child.stdout_so_far()
    }

    pub fn stderr_so_far(&self) -> String {
        self.child.stderr_so_far()
    }

    /// stdout followed by stderr so far (tcplog lines, warnings, errors).
    pub fn output_so_far(&self) -> String {
        self.child.output_so_far()
    }

    /// Waits until the output contains `needle` (e.g. a log line), failing if switchyard exits.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.child.wait_for_output(needle, timeout)
    }

    /// The underlying process guard.
    pub fn child(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

/// What `switchyard -c -f FILE` said about a config.
#[derive(Clone, Debug)]
pub struct CheckOutput {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Where the config was written (already deleted when this is returned); messages name it.
    pub path: PathBuf,
}

/// Runs `bin -c -f FILE` on `config` and returns everything it said.
pub fn check_config_output(bin: impl AsRef<Path>, config: &str) -> Result<CheckOutput> {
    let dir = TempDir::new("switchyard-check")?;
    let path = dir.path().join("check.cfg");
    std::fs::write(&path, config)?;
    let out = run_with_timeout(
        Command::new(bin.as_ref()).arg("-c").arg("-f").arg(&path),
        Duration::from_secs(60),
    )?;
    Ok(CheckOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    })
}

/// Runs `bin -c -f FILE` on `config`: (exit code, stderr). Panics if the binary cannot be run.
pub fn check_config(bin: impl AsRef<Path>, config: &str) -> (i32, String) {
    let out = check_config_output(bin.as_ref(), config)
        .unwrap_or_else(|e| panic!("running {} -c: {e:#}", bin.as_ref().display()));
    (out.code, out.stderr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::free_port;

    #[test]
    fn finds_bind_addresses() {
        let cfg = "frontend a\n    bind 127.0.0.1:5000\n  bind *:6000 # comment\nlisten b\n\tbind :7000-7002,[::1]:8000\n    bind /tmp/sock\n    bind :::9000\n# bind :1\n";
        let got: Vec<String> = bind_ports(cfg).iter().map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            [
                "127.0.0.1:5000",
                "127.0.0.1:6000",
                "127.0.0.1:7000",
                "127.0.0.1:7001",
                "127.0.0.1:7002",
                "[::1]:8000",
                "[::1]:9000"
            ]
        );
    }

    /// A stand-in for the binary: a shell script that listens with the Python on the machine,
    /// or plain `sh` for `-c`.
    fn fake_binary(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-switchyard");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn check_config_reports_code_and_stderr() {
        let dir = TempDir::new("testkit-selftest").unwrap();
        let bin = fake_binary(
            dir.path(),
            "echo \"$3:2: bad\" >&2; grep -q frob \"$3\" && exit 1; exit 0",
        );
        let (code, stderr) = check_config(&bin, "listen x\n    frob\n");
        assert_eq!(code, 1);
        assert!(stderr.contains("check.cfg:2: bad"), "{stderr}");
        assert_eq!(check_config(&bin, "listen x\n").0, 0);
    }

    #[test]
    fn switchyard_start_waits_for_binds_and_reports_early_exit() {
        if !crate::have_command("python3") {
            eprintln!("SKIP: python3 missing");
            return;
        }
        let dir = TempDir::new("testkit-selftest").unwrap();
        let bin = fake_binary(
            dir.path(),
            "port=$(sed -n 's/^ *bind 127.0.0.1:\\([0-9]*\\).*/\\1/p' \"$2\")\n\
             echo starting on $port\n\
             exec python3 -c 'import socket,sys,time; time.sleep(0.3); s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", int(sys.argv[1]))); s.listen(); print(\"listening\", flush=True); time.sleep(300)' $port",
        );
        let port = free_port();
        let mut sy =
            Switchyard::start(&bin, &format!("listen x\n    bind 127.0.0.1:{port}\n")).unwrap();
        assert_eq!(sy.frontends(), [SocketAddr::from(([127, 0, 0, 1], port))]);
        sy.wait_for_output("listening", Duration::from_secs(5))
            .unwrap();
        assert!(sy.output_so_far().contains(&format!("starting on {port}")));
        let status = sy.stop(Duration::from_secs(5)).expect("stops on SIGTERM");
        assert!(!status.success());

        let failing = fake_binary(dir.path(), "echo 'boom: bad config' >&2; exit 1");
        let err = Switchyard::start(&failing, "listen x\n    bind 127.0.0.1:1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("boom: bad config"), "{err}");
    }
}
