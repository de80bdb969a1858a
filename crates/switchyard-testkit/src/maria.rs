//! Real, throw-away MariaDB servers and Galera clusters.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::osuser::{server_user, OsUser};
use crate::ports::free_port;
use crate::process::run_with_timeout;
use crate::server::{ServerProcess, Shutdown};
use crate::tmp::{random_u64, TempDir};

/// The Galera wsrep provider [`GaleraCluster`] loads (Debian's `galera-4` package).
pub const GALERA_PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

const SQL_TIMEOUT: Duration = Duration::from_secs(120);
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// A joining Galera node gets a full state transfer (rsync) before it answers.
const JOIN_TIMEOUT: Duration = Duration::from_secs(240);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// `wsrep_local_state`: joining the cluster (receiving a state transfer).
pub const WSREP_JOINING: u32 = 1;
/// `wsrep_local_state`: donor or desynced (`wsrep_desync=ON`).
pub const WSREP_DONOR_DESYNCED: u32 = 2;
/// `wsrep_local_state`: joined, catching up.
pub const WSREP_JOINED: u32 = 3;
/// `wsrep_local_state`: synced, serving.
pub const WSREP_SYNCED: u32 = 4;

/// A MariaDB program: the first of `names` found in /usr/sbin, /usr/bin, /usr/local/{s,}bin or
/// `$PATH`.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    names
        .iter()
        .find_map(|n| dirs.iter().map(|d| d.join(n)).find(|p| p.is_file()))
}

/// The MariaDB server (`mariadbd`, or `mysqld` on older installs).
pub fn mariadbd_path() -> Option<PathBuf> {
    find_program(&["mariadbd", "mysqld"])
}

/// The MariaDB command-line client (`mariadb`, or `mysql`).
pub fn mariadb_client_path() -> Option<PathBuf> {
    find_program(&["mariadb", "mysql"])
}

fn install_db_path() -> Option<PathBuf> {
    find_program(&["mariadb-install-db", "mysql_install_db"])
}

fn missing_mariadb() -> Option<String> {
    let mut missing = Vec::new();
    if mariadbd_path().is_none() {
        missing.push("mariadbd");
    }
    if install_db_path().is_none() {
        missing.push("mariadb-install-db");
    }
    if mariadb_client_path().is_none() {
        missing.push("the mariadb client");
    }
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

fn missing_galera() -> Option<String> {
    let mut missing: Vec<String> = missing_mariadb().into_iter().collect();
    if !Path::new(GALERA_PROVIDER).is_file() {
        missing.push(format!("missing {GALERA_PROVIDER} (galera-4)"));
    }
    if find_program(&["rsync"]).is_none() {
        missing.push("missing rsync (the state transfer method)".to_string());
    }
    if find_program(&["wsrep_sst_rsync"]).is_none() {
        missing.push("missing wsrep_sst_rsync (mariadb-server)".to_string());
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// True if `mariadbd`, `mariadb-install-db` and the `mariadb` client are installed.
pub fn have_mariadb() -> bool {
    missing_mariadb().is_none()
}

/// True if MariaDB, the Galera provider and the rsync state transfer are installed.
pub fn have_galera() -> bool {
    missing_galera().is_none()
}

fn require(missing: Option<String>, what: &str, packages: &str, skip_vars: &[&str]) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    if let Some(var) = skip_vars
        .iter()
        .find(|v| std::env::var(v).is_ok_and(|v| v == "1"))
    {
        eprintln!("SKIP: {missing} ({var}=1)");
        return false;
    }
    panic!(
        "this test needs {what} but {missing}. Install it with scripts/ensure-deps.sh \
         (apt-get install {packages}), or set SWITCHYARD_SKIP_MARIADB=1 to skip MariaDB and \
         Galera tests deliberately."
    );
}

/// For tests that need MariaDB: true if it is installed. If it is not, panics with a clear
/// message, unless `SWITCHYARD_SKIP_MARIADB=1`, in which case it prints `SKIP: ...` and returns
/// false (the caller then returns early; see [`crate::require_mariadb_or_return`]).
pub fn require_mariadb() -> bool {
    require(
        missing_mariadb(),
        "MariaDB",
        "mariadb-server mariadb-client",
        &["SWITCHYARD_SKIP_MARIADB"],
    )
}

/// Like [`require_mariadb`], for tests that need a Galera cluster (also the provider and
/// rsync). Skipped with `SWITCHYARD_SKIP_MARIADB=1` (or `SWITCHYARD_SKIP_GALERA=1`).
pub fn require_galera() -> bool {
    require(
        missing_galera(),
        "Galera",
        "mariadb-server mariadb-client galera-4 rsync",
        &["SWITCHYARD_SKIP_MARIADB", "SWITCHYARD_SKIP_GALERA"],
    )
}

/// The OS user MariaDB runs as: None (the current user) unless we are root, then `mysql`.
fn maria_os_user() -> Result<Option<OsUser>> {
    server_user("mysql", "/nonexistent")
}

fn describe_failure(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `'text'` as an SQL string literal.
fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Runs SQL with the real `mariadb` client as `user` (with `password`, if any) over TCP on
/// 127.0.0.1:`port`: `mariadb --no-defaults -h127.0.0.1 -PPORT -uUSER -N -B -e SQL`. Returns
/// stdout without the trailing newline (rows on separate lines, columns split by tabs, no
/// header). A non-zero exit is an error carrying the client's stderr.
pub fn mariadb_sql_as(port: u16, user: &str, password: Option<&str>, sql: &str) -> Result<String> {
    let client =
        mariadb_client_path().ok_or_else(|| anyhow!("the mariadb client is not installed"))?;
    let mut cmd = Command::new(client);
    cmd.arg("--no-defaults")
        .args(["--protocol=TCP", "-h127.0.0.1"])
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .args(["--connect-timeout=10", "-N", "-B"])
        .env_remove("MYSQL_PWD")
        .env_remove("MYSQL_HOST")
        .env_remove("MYSQL_TCP_PORT")
        .env_remove("MYSQL_UNIX_PORT");
    if let Some(pw) = password {
        cmd.arg(format!("--password={pw}"));
    }
    cmd.arg("-e").arg(sql);
    let out = run_with_timeout(&mut cmd, SQL_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "{}",
            describe_failure(&format!("mariadb -P{port} -u{user} -e {sql:?}"), &out)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_string())
}

/// [`mariadb_sql_as`] as `root` without a password (what [`MariaInstance`] sets up).
pub fn mariadb_sql(port: u16, sql: &str) -> Result<String> {
    mariadb_sql_as(port, "root", None, sql)
}

/// The name of the MariaDB server (a [`MariaInstance`] or Galera node) answering on `port`, a
/// server port or a proxy in front of one: its `report_host`, set to the instance's name.
pub fn mariadb_node_name_at(port: u16) -> Result<String> {
    mariadb_sql(port, "SELECT @@global.report_host")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 60
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("MariaDB instance name {name:?} must be 1-60 characters of [A-Za-z0-9._-]");
    }
    Ok(())
}

/// The ports and settings of one Galera node.
#[derive(Clone, Debug)]
struct GaleraNode {
    cluster_name: String,
    /// `gcomm://127.0.0.1:P1,...` with every node's replication port.
    cluster_address: String,
    repl_port: u16,
    ist_port: u16,
    sst_port: u16,
}

/// A MariaDB server of its own: `mariadb-install-db` into a temp dir, `mariadbd` listening on
/// 127.0.0.1 at a [`free_port`] (`skip-name-resolve`, socket and pid file in the temp dir),
/// small buffers (`innodb_buffer_pool_size=32M`), durability relaxed
/// (`innodb_flush_log_at_trx_commit=2`, no doublewrite), `max_connections=200`. When the tests
/// run as root the server runs as the `mysql` OS user.
///
/// `root` has no password and may log in from 127.0.0.1 (the `mariadb` client over TCP:
/// [`MariaInstance::sql`]). `report_host` is set to the instance's name, so
/// [`mariadb_node_name_at`] tells which server answered through a proxy.
///
/// `mariadbd` is a direct child ([`ChildGuard`](crate::ChildGuard)) in its own process group,
/// with its log on stderr ([`MariaInstance::log`]). Dropping the instance kills it and removes
/// the data directory.
#[derive(Debug)]
pub struct MariaInstance {
    name: String,
    galera: Option<GaleraNode>,
    /// `mariadbd`, its temp dir and its logs (of earlier runs too).
    proc: ServerProcess,
}

impl MariaInstance {
    /// Starts a standalone server named `name` (`[A-Za-z0-9._-]`) and waits until it answers.
    pub fn start(name: &str) -> Result<MariaInstance> {
        let mut m = Self::new_unstarted(name, None)?;
        m.install_db()?;
        // The port may be taken between free_port() and the bind: retry with another.
        let mut last_err = None;
        for _ in 0..5 {
            m.proc.set_port(free_port());
            match m.launch(&[], START_TIMEOUT) {
                Ok(()) => return Ok(m),
                Err(e) if m.log().contains("Bind on TCP/IP port") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("could not start MariaDB")))
    }

    fn new_unstarted(name: &str, galera: Option<GaleraNode>) -> Result<MariaInstance> {
        check_name(name)?;
        if let Some(missing) = if galera.is_some() {
            missing_galera()
        } else {
            missing_mariadb()
        } {
            bail!("{missing}");
        }
        let user = maria_os_user()?;
        let proc = ServerProcess::new(TempDir::new("switchyard-maria")?, user);
        let data_dir = proc.data_dir();
        std::fs::create_dir(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        if let Some(u) = user {
            for p in [proc.base_dir(), data_dir] {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))
                    .with_context(|| format!("chown {} to the mysql user", p.display()))?;
            }
        }
        Ok(MariaInstance {
            name: name.to_string(),
            galera,
            proc,
        })
    }

    fn cnf_path(&self) -> PathBuf {
        self.proc.base_dir().join("my.cnf")
    }

    /// The unix socket the server also listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.proc.base_dir().join("mysqld.sock")
    }

    /// Writes `my.cnf` for the current port (and Galera settings).
    fn write_cnf(&self) -> Result<()> {
        let dir = self.proc.base_dir().display();
        let mut cnf = format!(
            "[mysqld]\n\
             datadir={data}\n\
             socket={dir}/mysqld.sock\n\
             pid-file={dir}/mysqld.pid\n\
             tmpdir={dir}\n\
             port={port}\n\
             bind-address=127.0.0.1\n\
             skip-name-resolve\n\
             report_host={name}\n\
             max_connections=200\n\
             performance_schema=OFF\n\
             innodb_buffer_pool_size=32M\n\
             innodb_log_file_size=16M\n\
             innodb_log_buffer_size=4M\n\
             innodb_use_native_aio=0\n\
             innodb_flush_log_at_trx_commit=2\n\
             innodb_doublewrite=0\n\
             key_buffer_size=1M\n\
             aria_pagecache_buffer_size=8M\n\
             table_open_cache=400\n\
             thread_cache_size=8\n\
             sync_binlog=0\n\
             character-set-server=utf8mb4\n",
            data = self.proc.data_dir().display(),
            port = self.port(),
            name = self.name,
        );
        if let Some(g) = &self.galera {
            cnf.push_str(&format!(
                "binlog_format=ROW\n\
                 default_storage_engine=InnoDB\n\
                 innodb_autoinc_lock_mode=2\n\
                 wsrep_on=ON\n\
                 wsrep_provider={GALERA_PROVIDER}\n\
                 wsrep_cluster_name={cluster}\n\
                 wsrep_cluster_address={address}\n\
                 wsrep_node_name={name}\n\
                 wsrep_node_address=127.0.0.1:{repl}\n\
                 wsrep_node_incoming_address=127.0.0.1:{port}\n\
                 wsrep_sst_method=rsync\n\
                 wsrep_sst_receive_address=127.0.0.1:{sst}\n\
                 wsrep_slave_threads=1\n\
                 wsrep_provider_options=\"base_host=127.0.0.1;base_port={repl};\
                 gmcast.listen_addr=tcp://127.0.0.1:{repl};ist.recv_addr=127.0.0.1:{ist};\
                 gcache.size=32M;\
                 evs.suspect_timeout=PT3S;evs.inactive_timeout=PT10S;evs.install_timeout=PT5S\"\n",
                cluster = g.cluster_name,
                address = g.cluster_address,
                name = self.name,
                repl = g.repl_port,
                port = self.port(),
                sst = g.sst_port,
                ist = g.ist_port,
            ));
        }
        let path = self.cnf_path();
        std::fs::write(&path, cnf).with_context(|| format!("writing {}", path.display()))?;
        // mariadbd ignores world-writable option files; 0644 is what it wants.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(())
    }

    /// A command for a server program, run as the mysql OS user when we are root.
    fn server_command(&self, program: &Path) -> Command {
        let mut cmd = self.proc.command(program);
        // The option file must come first.
        cmd.arg(format!("--defaults-file={}", self.cnf_path().display()));
        let path = std::env::var("PATH").unwrap_or_default();
        // The state transfer scripts (wsrep_sst_rsync) and what they run come from $PATH.
        cmd.env("PATH", format!("/usr/sbin:/usr/bin:/sbin:/bin:{path}"))
            .env_remove("MYSQL_PWD")
            .env_remove("MYSQL_HOME");
        cmd
    }

    fn install_db(&self) -> Result<()> {
        self.write_cnf()?;
        let program = install_db_path().ok_or_else(|| anyhow!("mariadb-install-db is missing"))?;
        let mut cmd = self.server_command(&program);
        cmd.args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--wsrep-on=OFF",
        ]);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(180))?;
        if !out.status.success() {
            bail!("{}", describe_failure("mariadb-install-db", &out));
        }
        Ok(())
    }

    /// Spawns `mariadbd` on `self.port()` and waits until it answers queries (and, for a Galera
    /// node, is synced).
    fn launch(&mut self, extra_args: &[&str], timeout: Duration) -> Result<()> {
        self.proc.retire();
        self.write_cnf()?;
        let program = mariadbd_path().ok_or_else(|| anyhow!("mariadbd is missing"))?;
        let mut cmd = self.server_command(&program);
        cmd.args(extra_args);
        self.proc.spawn(&mut cmd)?;
        let deadline = Instant::now() + timeout;
        let addr = self.addr();
        loop {
            let server = self.proc.server_mut().expect("just spawned");
            if let Some(status) = server.try_wait() {
                bail!(
                    "mariadbd {} exited ({status}) during startup on port {}; log:\n{}",
                    self.name,
                    self.port(),
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() && self.ready()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "mariadbd {} was not ready on port {} within {timeout:?}; log:\n{}",
                    self.name,
                    self.port(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ready(&self) -> bool {
        if self.galera.is_none() {
            return self.sql("SELECT 1").is_ok();
        }
        self.sql(
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME IN ('wsrep_ready', 'wsrep_local_state') ORDER BY VARIABLE_NAME",
        )
        .is_ok_and(|s| s.split_whitespace().collect::<Vec<_>>() == ["4", "ON"])
    }

    /// The client port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.proc.port()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.proc.addr()
    }

    /// The name given at start (also its `report_host` and, in Galera, `wsrep_node_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data_dir(&self) -> &Path {
        self.proc.data_dir()
    }

    /// The directory holding the data dir, `my.cnf`, the socket and the pid file.
    pub fn base_dir(&self) -> &Path {
        self.proc.base_dir()
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// True while `mariadbd` is alive.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// The server log (its stderr, including earlier runs of this instance).
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Runs SQL as root over TCP with the real `mariadb` client. See [`mariadb_sql_as`].
    pub fn sql(&self, sql: &str) -> Result<String> {
        mariadb_sql(self.port(), sql)
    }

    /// Runs SQL as `user` (with `password`, if any) over TCP. See [`mariadb_sql_as`].
    pub fn sql_as(&self, user: &str, password: Option<&str>, sql: &str) -> Result<String> {
        mariadb_sql_as(self.port(), user, password, sql)
    }

    /// The name ([`MariaInstance::name`]) of whichever server answers on `port_override`
    /// (default: this one). See [`mariadb_node_name_at`].
    pub fn node_name(&self, port_override: Option<u16>) -> Result<String> {
        mariadb_node_name_at(port_override.unwrap_or(self.port()))
    }

    /// Creates `user`@`127.0.0.1` (if it does not exist) for health checks: without a password
    /// (what HAProxy's `option mysql-check user NAME` needs) or with `password`. It has no
    /// privileges beyond logging in (USAGE), which is enough for `SELECT @@read_only` and
    /// `SHOW STATUS LIKE 'wsrep%'`. In a Galera cluster it is replicated to every node.
    pub fn create_check_user(&self, user: &str, password: Option<&str>) -> Result<()> {
        let mut sql = format!("CREATE USER IF NOT EXISTS {}@'127.0.0.1'", sql_quote(user));
        if let Some(pw) = password {
            sql.push_str(&format!(" IDENTIFIED BY {}", sql_quote(pw)));
        }
        self.sql(&sql).map(drop)
    }

    /// `SET GLOBAL read_only = ON|OFF`.
    pub fn set_read_only(&self, read_only: bool) -> Result<()> {
        let value = if read_only { "ON" } else { "OFF" };
        self.sql(&format!("SET GLOBAL read_only = {value}"))
            .map(drop)
    }

    /// `@@global.read_only`.
    pub fn is_read_only(&self) -> Result<bool> {
        match self.sql("SELECT @@global.read_only")?.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            other => bail!("unexpected @@read_only {other:?}"),
        }
    }

    /// A `SHOW GLOBAL STATUS` value, e.g. `wsrep_local_state` or `wsrep_cluster_size`.
    pub fn global_status(&self, variable: &str) -> Result<String> {
        self.sql(&format!(
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = {}",
            sql_quote(&variable.to_ascii_uppercase())
        ))
    }

    fn status_number(&self, variable: &str) -> Result<u32> {
        let v = self.global_status(variable)?;
        v.trim()
            .parse()
            .with_context(|| format!("{variable} on {} is {v:?}", self.name))
    }

    /// `wsrep_local_state`: [`WSREP_JOINING`] 1, [`WSREP_DONOR_DESYNCED`] 2, [`WSREP_JOINED`] 3,
    /// [`WSREP_SYNCED`] 4 (0 when not in a cluster).
    pub fn wsrep_local_state(&self) -> Result<u32> {
        self.status_number("wsrep_local_state")
    }

    /// `wsrep_cluster_size`: the nodes in this node's view of the cluster.
    pub fn wsrep_cluster_size(&self) -> Result<u32> {
        self.status_number("wsrep_cluster_size")
    }

    /// Polls `f` (a state of this server) until it equals `want`; fails with the last value.
    fn wait_until(
        &self,
        what: &str,
        want: u32,
        timeout: Duration,
        f: impl Fn(&Self) -> Result<u32>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = f(self);
            if matches!(got, Ok(v) if v == want) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what} of {} did not become {want} within {timeout:?} (last: {got:?}); log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `wsrep_local_state` is `state`.
    pub fn wait_wsrep_local_state(&self, state: u32, timeout: Duration) -> Result<()> {
        self.wait_until("wsrep_local_state", state, timeout, Self::wsrep_local_state)
    }

    /// Waits until `wsrep_cluster_size` is `size`.
    pub fn wait_wsrep_cluster_size(&self, size: u32, timeout: Duration) -> Result<()> {
        self.wait_until(
            "wsrep_cluster_size",
            size,
            timeout,
            Self::wsrep_cluster_size,
        )
    }

    /// `SET GLOBAL wsrep_desync = ON`, then waits for `wsrep_local_state` 2 (Donor/Desynced).
    pub fn desync(&self) -> Result<()> {
        self.sql("SET GLOBAL wsrep_desync = ON")?;
        self.wait_wsrep_local_state(WSREP_DONOR_DESYNCED, Duration::from_secs(30))
    }

    /// `SET GLOBAL wsrep_desync = OFF`, then waits for `wsrep_local_state` 4 (Synced).
    pub fn resync(&self) -> Result<()> {
        self.sql("SET GLOBAL wsrep_desync = OFF")?;
        self.wait_wsrep_local_state(WSREP_SYNCED, Duration::from_secs(60))
    }

    /// Clean shutdown (SIGTERM); SIGKILL after 60 s. The data directory stays;
    /// [`MariaInstance::restart`] starts the server again. A Galera node leaves the cluster
    /// cleanly (the others' `wsrep_cluster_size` drops at once).
    pub fn stop(&mut self) -> Result<()> {
        match self.proc.shutdown(libc::SIGTERM, STOP_TIMEOUT) {
            Shutdown::NotRunning => Ok(()),
            Shutdown::Killed => bail!(
                "mariadbd {} ignored SIGTERM for {STOP_TIMEOUT:?}; killed. log:\n{}",
                self.name,
                self.log()
            ),
            Shutdown::Exited => {
                // Helpers (a state transfer's rsync) may linger in the group.
                if let Some(server) = self.proc.server_mut() {
                    server.signal_group(libc::SIGKILL);
                }
                Ok(())
            }
        }
    }

    /// Simulates a crash: SIGKILL to `mariadbd` (and its process group), then waits until the
    /// port refuses connections. [`MariaInstance::restart`] brings it back (crash recovery; a
    /// Galera node rejoins with a state transfer).
    pub fn kill9(&mut self) -> Result<()> {
        let not_running = format!("mariadbd {} is not running", self.name);
        let exited = format!("mariadbd {} had already exited", self.name);
        self.proc.kill9("mariadbd", &not_running, &exited)
    }

    /// Starts the server again on the same ports and data directory after
    /// [`MariaInstance::stop`] or [`MariaInstance::kill9`]. A Galera node rejoins the cluster
    /// (never bootstraps a new one) and this returns once it is synced.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("mariadbd {} is still running", self.name);
        }
        let timeout = if self.galera.is_some() {
            JOIN_TIMEOUT
        } else {
            START_TIMEOUT
        };
        self.launch(&[], timeout)
    }
}

impl Drop for MariaInstance {
    fn drop(&mut self) {
        if let Some(server) = self.proc.server_mut() {
            // The data dir is going away: no clean shutdown needed.
            server.set_grace(Duration::ZERO);
            if server.is_running() {
                server.signal_group(libc::SIGKILL);
                let _ = server.wait_timeout(Duration::from_secs(10));
            }
        }
        // When the fields drop, the server's guard prints the log when panicking, then its temp
        // dir is removed.
    }
}

/// A Galera cluster of real `mariadbd` nodes on 127.0.0.1, each a [`MariaInstance`] (named
/// `node0`, `node1`, ...) with its own client, replication (`gmcast.listen_addr`), IST and SST
/// ports; state transfers use rsync. Node 0 bootstraps the cluster (`--wsrep-new-cluster`), the
/// others join one after the other with a full state transfer. Small footprint:
/// `innodb_buffer_pool_size=32M`, `gcache.size=32M`. Failure detection is quicker than
/// Galera's defaults (`evs.suspect_timeout=PT3S`), so a killed node leaves the others' view
/// within a few seconds.
///
/// Starting 3 nodes takes ~10-40 s depending on the machine. Dropping the cluster kills all
/// nodes and removes their data.
#[derive(Debug)]
pub struct GaleraCluster {
    nodes: Vec<MariaInstance>,
}

impl GaleraCluster {
    /// Starts an `n`-node cluster and waits until every node is Synced and sees all `n`.
    pub fn start(n: usize) -> Result<GaleraCluster> {
        if n == 0 {
            bail!("a Galera cluster needs at least one node");
        }
        let repl_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let cluster_address = format!(
            "gcomm://{}",
            repl_ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let cluster_name = format!("switchyard-{:08x}", random_u64() as u32);
        let mut nodes = Vec::with_capacity(n);
        for (i, &repl_port) in repl_ports.iter().enumerate() {
            let galera = GaleraNode {
                cluster_name: cluster_name.clone(),
                cluster_address: cluster_address.clone(),
                repl_port,
                ist_port: free_port(),
                sst_port: free_port(),
            };
            let mut node = MariaInstance::new_unstarted(&format!("node{i}"), Some(galera))?;
            node.proc.set_port(free_port());
            nodes.push(node);
        }
        let mut cluster = GaleraCluster { nodes };
        for i in 0..n {
            let node = &mut cluster.nodes[i];
            if i == 0 {
                node.install_db()?;
                node.launch(&["--wsrep-new-cluster"], START_TIMEOUT)?;
            } else {
                // Empty data dir: the joiner gets everything by state transfer.
                node.launch(&[], JOIN_TIMEOUT)?;
            }
        }
        for node in &cluster.nodes {
            node.wait_wsrep_cluster_size(n as u32, Duration::from_secs(60))?;
        }
        Ok(cluster)
    }

    /// The number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &MariaInstance {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut MariaInstance {
        &mut self.nodes[i]
    }

    pub fn nodes(&self) -> &[MariaInstance] {
        &self.nodes
    }

    /// Node `i`'s client (SQL) port on 127.0.0.1.
    pub fn client_port(&self, i: usize) -> u16 {
        self.nodes[i].port()
    }

    /// Every node's client port, in node order.
    pub fn client_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(MariaInstance::port).collect()
    }

    /// Runs SQL as root on node `i`.
    pub fn sql(&self, i: usize, sql: &str) -> Result<String> {
        self.nodes[i].sql(sql)
    }

    /// Node `i`'s `wsrep_local_state` (4 = Synced, 2 = Donor/Desynced).
    pub fn local_state(&self, i: usize) -> Result<u32> {
        self.nodes[i].wsrep_local_state()
    }

    /// Node `i`'s `wsrep_cluster_size`.
    pub fn cluster_size(&self, i: usize) -> Result<u32> {
        self.nodes[i].wsrep_cluster_size()
    }

    /// Waits until every running node sees `size` nodes.
    pub fn wait_cluster_size(&mut self, size: u32, timeout: Duration) -> Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running() {
                self.nodes[i].wait_wsrep_cluster_size(size, timeout)?;
            }
        }
        Ok(())
    }

    /// Desyncs node `i` (`wsrep_desync=ON`) and waits for state 2. See [`MariaInstance::desync`].
    pub fn desync(&self, i: usize) -> Result<()> {
        self.nodes[i].desync()
    }

    /// Resyncs node `i` and waits for state 4. See [`MariaInstance::resync`].
    pub fn resync(&self, i: usize) -> Result<()> {
        self.nodes[i].resync()
    }

    /// Clean shutdown of node `i` (it leaves the cluster). See [`MariaInstance::stop`].
    pub fn stop_node(&mut self, i: usize) -> Result<()> {
        self.nodes[i].stop()
    }

    /// SIGKILL to node `i`. See [`MariaInstance::kill9`].
    pub fn kill9(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill9()
    }

    /// Starts a stopped or killed node `i` again; returns once it has rejoined and is synced.
    pub fn restart_node(&mut self, i: usize) -> Result<()> {
        self.nodes[i].restart()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_odd_names_and_quotes_sql() {
        assert!(check_name("node-1.a_b").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("a\nwsrep_on=OFF").is_err());
        assert_eq!(sql_quote(r"it's\"), r"'it''s\\'");
    }

    #[test]
    fn real_mariadb_start_users_read_only_kill9_restart() {
        crate::require_mariadb_or_return!();
        let _serial = crate::SERVER_TESTS
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let mut m = MariaInstance::start("maria1").unwrap();
        eprintln!("MariaDB started in {:?}", started.elapsed());
        assert_eq!(m.sql("SELECT 1").unwrap(), "1");
        assert_eq!(m.node_name(None).unwrap(), "maria1");
        assert_eq!(m.sql("SELECT 1 UNION ALL SELECT 2").unwrap(), "1\n2");
        let err = m
            .sql("SELECT * FROM no_such_table")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_table"), "{err}");
        if crate::osuser::is_root() {
            assert_eq!(m.sql("SELECT CURRENT_USER()").unwrap(), "root@127.0.0.1");
            use std::os::unix::fs::MetadataExt;
            let pid = m.pid().unwrap();
            let uid = std::fs::metadata(format!("/proc/{pid}")).unwrap().uid();
            assert_ne!(uid, 0, "mariadbd must not run as root");
        }

        assert!(!m.is_read_only().unwrap());
        m.set_read_only(true).unwrap();
        assert!(m.is_read_only().unwrap());
        m.set_read_only(false).unwrap();
        assert!(!m.is_read_only().unwrap());

        m.create_check_user("haproxy", None).unwrap();
        m.create_check_user("checker", Some("s3cr'et")).unwrap();
        assert_eq!(
            m.sql_as("haproxy", None, "SELECT @@read_only").unwrap(),
            "0"
        );
        assert_eq!(
            m.sql_as("checker", Some("s3cr'et"), "SELECT CURRENT_USER()")
                .unwrap(),
            "checker@127.0.0.1"
        );
        assert!(m.sql_as("checker", Some("wrong"), "SELECT 1").is_err());

        let port = m.port();
        m.kill9().unwrap();
        assert!(!m.is_running());
        assert!(mariadb_sql(port, "SELECT 1").is_err());
        m.restart().unwrap();
        assert_eq!(mariadb_node_name_at(port).unwrap(), "maria1");
        m.stop().unwrap();
        assert!(!m.is_running());
        let base = m.base_dir().to_path_buf();
        assert!(base.exists());
        drop(m);
        assert!(!base.exists(), "temp dir removed on drop");
    }

    /// SLOW (~20 s here, up to ~60 s on a loaded machine): a 3-node Galera cluster (two full
    /// rsync state transfers), a rejoin and a crash. Skip with `cargo test -- --skip slow_`.
    #[test]
    fn slow_real_galera_three_nodes_desync_stop_kill() {
        crate::require_galera_or_return!();
        let _serial = crate::SERVER_TESTS
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let mut g = GaleraCluster::start(3).unwrap();
        eprintln!("Galera: 3 nodes synced in {:?}", started.elapsed());
        assert_eq!(g.len(), 3);
        let ports = g.client_ports();
        assert_eq!(ports.len(), 3);
        for i in 0..3 {
            assert_eq!(g.cluster_size(i).unwrap(), 3);
            assert_eq!(g.local_state(i).unwrap(), WSREP_SYNCED);
            assert_eq!(
                mariadb_node_name_at(g.client_port(i)).unwrap(),
                format!("node{i}")
            );
        }
        // Writes replicate, users too.
        g.sql(
            0,
            "CREATE DATABASE t; CREATE TABLE t.x(i INT PRIMARY KEY); INSERT INTO t.x VALUES (1)",
        )
        .unwrap();
        g.node(0).create_check_user("haproxy", None).unwrap();
        assert_eq!(g.sql(2, "SELECT i FROM t.x").unwrap(), "1");
        assert_eq!(
            g.node(1)
                .sql_as("haproxy", None, "SELECT @@wsrep_node_name")
                .unwrap(),
            "node1"
        );

        let t = Instant::now();
        g.desync(1).unwrap();
        assert_eq!(g.local_state(1).unwrap(), WSREP_DONOR_DESYNCED);
        assert_eq!(g.local_state(0).unwrap(), WSREP_SYNCED);
        g.resync(1).unwrap();
        assert_eq!(g.local_state(1).unwrap(), WSREP_SYNCED);
        eprintln!("Galera: desync/resync in {:?}", t.elapsed());

        let t = Instant::now();
        g.stop_node(2).unwrap();
        g.wait_cluster_size(2, Duration::from_secs(30)).unwrap();
        assert_eq!(g.cluster_size(0).unwrap(), 2);
        assert!(mariadb_sql(ports[2], "SELECT 1").is_err());
        eprintln!("Galera: clean stop seen in {:?}", t.elapsed());

        let t = Instant::now();
        g.restart_node(2).unwrap();
        g.wait_cluster_size(3, Duration::from_secs(30)).unwrap();
        eprintln!("Galera: rejoin (IST) in {:?}", t.elapsed());

        let t = Instant::now();
        g.kill9(1).unwrap();
        g.wait_cluster_size(2, Duration::from_secs(60)).unwrap();
        assert_eq!(g.local_state(0).unwrap(), WSREP_SYNCED);
        g.sql(0, "INSERT INTO t.x VALUES (2)").unwrap();
        assert_eq!(g.sql(2, "SELECT count(*) FROM t.x").unwrap(), "2");
        eprintln!("Galera: kill -9 detected in {:?}", t.elapsed());
    }
}
