//! Real, throw-away PostgreSQL servers.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::osuser::{server_user, OsUser};
use crate::ports::free_port;
use crate::process::run_with_timeout;
use crate::server::{ServerProcess, Shutdown};
use crate::tmp::TempDir;

/// The table [`PgInstance::start_named`] creates: one row, one column `name`.
pub const NODE_TABLE: &str = "switchyard_node";

const PSQL_TIMEOUT: Duration = Duration::from_secs(120);
const PGBENCH_TIMEOUT: Duration = Duration::from_secs(900);
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn version_key(dir: &Path) -> Vec<u64> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.split('.').map(|p| p.parse().unwrap_or(0)).collect())
        .unwrap_or_default()
}

/// The directory with the PostgreSQL server binaries (`initdb`, `postgres`):
/// `$SWITCHYARD_PG_BIN` if set, else the newest `/usr/lib/postgresql/<version>/bin`.
/// `$PATH` is deliberately not consulted.
pub fn pg_bin_dir() -> Option<PathBuf> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("SWITCHYARD_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return usable(&dir).then_some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|v| usable(&v.join("bin")))
        .collect();
    versions.sort_by_key(|v| version_key(v));
    versions.pop().map(|v| v.join("bin"))
}

/// A PostgreSQL client tool (`psql`, `pgbench`, `pg_isready`, ...): from [`pg_bin_dir`] if it is
/// there, else `/usr/bin/<name>`.
pub fn pg_tool(name: &str) -> Option<PathBuf> {
    pg_bin_dir()
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
}

fn missing_postgres() -> Option<String> {
    let mut missing = Vec::new();
    if pg_bin_dir().is_none() {
        missing.push("the PostgreSQL server (initdb, postgres under /usr/lib/postgresql/<version>/bin or $SWITCHYARD_PG_BIN)");
    }
    if pg_tool("psql").is_none() {
        missing.push("psql");
    }
    if pg_tool("pgbench").is_none() {
        missing.push("pgbench");
    }
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

/// True if a PostgreSQL server, `psql` and `pgbench` are installed.
pub fn have_postgres() -> bool {
    missing_postgres().is_none()
}

/// For tests that need PostgreSQL: true if it is installed. If it is not, panics with a clear
/// message, unless `SWITCHYARD_SKIP_PG=1`, in which case it prints `SKIP: ...` and returns false
/// (the caller then returns early; see [`crate::require_postgres_or_return`]).
pub fn require_postgres() -> bool {
    let Some(missing) = missing_postgres() else {
        return true;
    };
    if std::env::var("SWITCHYARD_SKIP_PG").is_ok_and(|v| v == "1") {
        eprintln!("SKIP: {missing} (SWITCHYARD_SKIP_PG=1)");
        return false;
    }
    panic!(
        "this test needs PostgreSQL but {missing}. Install it with scripts/ensure-deps.sh \
         (apt-get install postgresql postgresql-client), or set SWITCHYARD_SKIP_PG=1 to skip \
         PostgreSQL tests deliberately."
    );
}

/// The OS user PostgreSQL runs as: None (the current user) unless we are root, then `postgres`,
/// created as a system user if it does not exist.
fn pg_os_user() -> Result<Option<OsUser>> {
    server_user("postgres", "/var/lib/postgresql")
}

fn describe_failure(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn client_command(tool: &str, port: u16) -> Result<Command> {
    let path = pg_tool(tool).ok_or_else(|| anyhow!("{tool} is not installed"))?;
    let mut cmd = Command::new(path);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS");
    Ok(cmd)
}

/// Runs `psql -X -h 127.0.0.1 -p PORT -U postgres -d postgres -v ON_ERROR_STOP=1 -Atc SQL` and
/// returns its stdout without the trailing newline (rows on separate lines, columns split by
/// `|`). A non-zero exit is an error carrying psql's stderr.
pub fn psql(port: u16, sql: &str) -> Result<String> {
    let mut cmd = client_command("psql", port)?;
    cmd.args(["-X", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql]);
    let out = run_with_timeout(&mut cmd, PSQL_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "{}",
            describe_failure(&format!("psql -p {port} -c {sql:?}"), &out)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_string())
}

/// The name given to [`PgInstance::start_named`] (or [`PgInstance::start_primary`],
/// [`PgInstance::start_standby`]) of the server answering on `port` (a PostgreSQL port or a proxy
/// in front of one).
///
/// This is the server's `cluster_name` setting, which every named instance gets (it is not
/// replicated, so a standby answers with its own name). For names `cluster_name` cannot hold
/// (non-printable-ASCII), the row of the `switchyard_node` table is used instead.
pub fn node_name_at(port: u16) -> Result<String> {
    let name = psql(port, "SELECT current_setting('cluster_name')")?;
    if !name.is_empty() {
        return Ok(name);
    }
    psql(port, &format!("SELECT name FROM {NODE_TABLE}"))
}

/// True if `name` can be PostgreSQL's `cluster_name` unchanged (printable ASCII; the server
/// replaces anything else with `?`).
fn fits_cluster_name(name: &str) -> bool {
    !name.is_empty() && name.len() < 64 && name.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

fn parse_bool(s: &str) -> Result<bool> {
    match s.trim() {
        "t" => Ok(true),
        "f" => Ok(false),
        other => bail!("expected t or f from psql, got {other:?}"),
    }
}

/// What a `pgbench` run reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PgbenchReport {
    /// `tps = N (without initial connection time)`.
    pub tps: f64,
    /// `number of transactions actually processed: N[/M]` (N).
    pub transactions: u64,
    /// `number of failed transactions: N` (PostgreSQL 15+; 0 when absent).
    pub failed: u64,
    /// `latency average = N ms`, if printed.
    pub latency_avg_ms: Option<f64>,
    /// pgbench's exit code: 0 ok, 2 if some client aborted (the report is still printed).
    pub exit_code: Option<i32>,
    /// stdout followed by stderr.
    pub raw: String,
}

impl PgbenchReport {
    /// Panics unless pgbench exited 0 with no failed transaction, showing its output.
    pub fn assert_clean(&self) {
        assert_eq!(self.exit_code, Some(0), "{}", self.raw);
        assert_eq!(self.failed, 0, "{}", self.raw);
    }

    /// Parses pgbench's summary. Fails if there is no `tps =` or transaction count line.
    pub fn parse(raw: &str) -> Result<PgbenchReport> {
        let value_after = |prefix: &str| -> Option<&str> {
            raw.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .map(str::trim)
        };
        let first_number = |s: &str| -> Option<f64> {
            let end = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            s[..end].parse().ok()
        };
        let tps_line = raw
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("tps = "))
            .find(|l| l.contains("without") || !l.contains("including"))
            .or_else(|| value_after("tps = "));
        let tps = tps_line.and_then(first_number);
        let transactions =
            value_after("number of transactions actually processed:").and_then(first_number);
        let (Some(tps), Some(transactions)) = (tps, transactions) else {
            bail!("could not find pgbench's summary (tps, transactions) in:\n{raw}");
        };
        Ok(PgbenchReport {
            tps,
            transactions: transactions as u64,
            failed: value_after("number of failed transactions:")
                .and_then(first_number)
                .unwrap_or(0.0) as u64,
            latency_avg_ms: value_after("latency average =").and_then(first_number),
            exit_code: None,
            raw: raw.to_string(),
        })
    }
}

/// Runs `pgbench -h 127.0.0.1 -p PORT -U postgres ARGS postgres` (e.g. `&["-c", "4", "-T", "5"]`)
/// and parses its summary. A run in which some clients aborted (exit 2) still returns the report
/// (check `exit_code`/`failed`); an error means pgbench printed no summary at all.
pub fn pgbench(port: u16, args: &[&str]) -> Result<PgbenchReport> {
    let mut cmd = client_command("pgbench", port)?;
    cmd.args(args).arg("postgres");
    let out = run_with_timeout(&mut cmd, PGBENCH_TIMEOUT)?;
    let raw = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report = PgbenchReport::parse(&raw)
        .with_context(|| format!("pgbench -p {port} {args:?} exited with {}", out.status))?;
    report.exit_code = out.status.code();
    Ok(report)
}

/// A PostgreSQL server of its own: fresh `initdb` in a temp dir, listening on 127.0.0.1 at a
/// [`free_port`] (sockets in the temp dir), trust authentication for user `postgres`, durability
/// off (`fsync`, `synchronous_commit`, `full_page_writes`), `max_connections=200`,
/// `shared_buffers=16MB`. When the tests run as root the server runs as the `postgres` OS user.
///
/// The postmaster is a direct child ([`ChildGuard`](crate::ChildGuard)) in its own process
/// group; its log (stderr) is available from [`PgInstance::log`]. Dropping the instance stops it
/// in immediate mode and removes the data directory.
#[derive(Debug)]
pub struct PgInstance {
    name: Option<String>,
    bin: PathBuf,
    /// The postmaster, its temp dir and its logs (of earlier runs too, before
    /// [`PgInstance::stop`]/[`PgInstance::kill9`] and a restart).
    proc: ServerProcess,
}

impl PgInstance {
    /// Starts an anonymous instance.
    pub fn start() -> Result<PgInstance> {
        Self::start_inner(None)
    }

    /// Starts an instance that knows its name: `cluster_name` is set to it (printable ASCII names)
    /// and the table `switchyard_node(name text)` holds it in one row, so a test can ask which
    /// backend answered through a proxy with [`PgInstance::node_name`] or [`node_name_at`].
    ///
    /// Every instance can be a replication primary (`wal_level=replica`, `max_wal_senders=10`,
    /// and initdb's `host replication all 127.0.0.1/32 trust` line in `pg_hba.conf`); see
    /// [`PgInstance::start_standby`].
    pub fn start_named(name: &str) -> Result<PgInstance> {
        let pg = Self::start_inner(Some(name))?;
        pg.psql(
            None,
            &format!(
                "CREATE TABLE {NODE_TABLE}(name text); INSERT INTO {NODE_TABLE} VALUES ('{}')",
                name.replace('\'', "''")
            ),
        )?;
        Ok(pg)
    }

    /// Starts a replication primary: the same as [`PgInstance::start_named`] (every instance is
    /// replication-capable), named for readability at the call site.
    pub fn start_primary(name: &str) -> Result<PgInstance> {
        Self::start_named(name)
    }

    /// Starts a streaming-replication hot standby of `primary`: the real `pg_basebackup -R -X
    /// stream` (as the postgres OS user when root) into a new data directory, then a server on
    /// its own free port. `name` becomes its `cluster_name` (and so its
    /// [`PgInstance::node_name`]; the replicated `switchyard_node` table still holds the
    /// primary's name) and the `application_name` it shows in the primary's
    /// `pg_stat_replication`. `name` must be printable ASCII.
    ///
    /// Returns once the standby accepts read-only queries; use
    /// [`PgInstance::wait_replay_caught_up`] to wait for it to replay everything.
    pub fn start_standby(primary: &PgInstance, name: &str) -> Result<PgInstance> {
        if !fits_cluster_name(name) {
            bail!("standby name {name:?} must be 1-63 printable ASCII characters (cluster_name)");
        }
        let mut pg = Self::new_unstarted(Some(name))?;
        let mut backup = pg.server_command("pg_basebackup");
        backup
            .arg("-D")
            .arg(pg.proc.data_dir())
            .args(["-h", "127.0.0.1", "-p", &primary.port().to_string()])
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ])
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS");
        let out = run_with_timeout(&mut backup, Duration::from_secs(300))?;
        if !out.status.success() {
            bail!(
                "{}",
                describe_failure(
                    &format!("pg_basebackup from port {} (primary)", primary.port()),
                    &out
                )
            );
        }
        pg.launch_on_free_port()?;
        Ok(pg)
    }

    fn new_unstarted(name: Option<&str>) -> Result<PgInstance> {
        let bin =
            pg_bin_dir().ok_or_else(|| anyhow!("{}", missing_postgres().unwrap_or_default()))?;
        let user = pg_os_user()?;
        let dir = TempDir::new("switchyard-pg")?;
        if let Some(u) = user {
            std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid))
                .with_context(|| format!("chown {} to the postgres user", dir.path().display()))?;
        }
        Ok(PgInstance {
            name: name.map(str::to_string),
            bin,
            proc: ServerProcess::new(dir, user),
        })
    }

    fn start_inner(name: Option<&str>) -> Result<PgInstance> {
        let mut pg = Self::new_unstarted(name)?;
        let mut initdb = pg.server_command("initdb");
        initdb.arg("-D").arg(pg.proc.data_dir());
        initdb.args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let out = run_with_timeout(&mut initdb, Duration::from_secs(180))?;
        if !out.status.success() {
            bail!("{}", describe_failure("initdb", &out));
        }
        pg.launch_on_free_port()?;
        Ok(pg)
    }

    /// The port may be taken between free_port() and the bind: retry with another.
    fn launch_on_free_port(&mut self) -> Result<()> {
        let mut last_err = None;
        for _ in 0..5 {
            self.proc.set_port(free_port());
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e)
                    if self.log().contains("could not bind")
                        || self.log().contains("could not create any TCP") =>
                {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("could not start PostgreSQL")))
    }

    /// A command for a server binary, run as the postgres OS user when we are root.
    fn server_command(&self, tool: &str) -> Command {
        self.proc.command(self.bin.join(tool))
    }

    /// Spawns the postmaster on `self.port()` and waits until it answers queries.
    fn launch(&mut self) -> Result<()> {
        self.proc.retire();
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D").arg(self.proc.data_dir());
        cmd.args(["-p", &self.port().to_string(), "-h", "127.0.0.1"])
            .arg("-k")
            .arg(self.proc.base_dir());
        for setting in [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
            "shared_buffers=16MB",
            "logging_collector=off",
            "max_wal_size=1GB",
            "checkpoint_timeout=30min",
            // Every instance can be a streaming-replication primary or standby.
            "wal_level=replica",
            "max_wal_senders=10",
            "max_replication_slots=10",
            "wal_keep_size=256MB",
            "hot_standby=on",
            "hot_standby_feedback=on",
            "wal_receiver_status_interval=1s",
        ] {
            cmd.args(["-c", setting]);
        }
        if let Some(name) = self.name.as_deref().filter(|n| fits_cluster_name(n)) {
            cmd.arg("-c").arg(format!("cluster_name={name}"));
        }
        self.proc.spawn(&mut cmd)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = self.addr();
        loop {
            let server = self.proc.server_mut().expect("just spawned");
            if let Some(status) = server.try_wait() {
                bail!(
                    "postgres exited ({status}) during startup on port {}; log:\n{}",
                    self.port(),
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && psql(self.port(), "SELECT 1").is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "postgres did not accept queries on port {} within {START_TIMEOUT:?}; log:\n{}",
                    self.port(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.proc.port()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.proc.addr()
    }

    /// The name given to [`PgInstance::start_named`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn data_dir(&self) -> &Path {
        self.proc.data_dir()
    }

    /// The directory holding the data dir and the unix sockets.
    pub fn base_dir(&self) -> &Path {
        self.proc.base_dir()
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// True while the postmaster process is alive.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// The server log (its stderr, including earlier runs of this instance).
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Runs SQL with the real `psql` on this instance's port, or on `port_override` (a proxy in
    /// front of it). See [`psql`].
    pub fn psql(&self, port_override: Option<u16>, sql: &str) -> Result<String> {
        psql(port_override.unwrap_or(self.port()), sql)
    }

    /// The node name (see [`PgInstance::start_named`]) of whichever server answers on
    /// `port_override` (default: this instance).
    pub fn node_name(&self, port_override: Option<u16>) -> Result<String> {
        node_name_at(port_override.unwrap_or(self.port()))
    }

    /// True while the server is a standby (`pg_is_in_recovery()`).
    pub fn is_in_recovery(&self) -> Result<bool> {
        parse_bool(&self.psql(None, "SELECT pg_is_in_recovery()")?)
    }

    /// Promotes this standby (`SELECT pg_promote()`, which waits up to 60 s) and waits until
    /// `pg_is_in_recovery()` is false, i.e. it accepts writes.
    pub fn promote(&self) -> Result<()> {
        let done = self.psql(None, "SELECT pg_promote(true, 60)")?;
        if !parse_bool(&done)? {
            bail!(
                "pg_promote() on port {} did not finish within 60 s; log:\n{}",
                self.port(),
                self.log()
            );
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while self.is_in_recovery()? {
            if Instant::now() >= deadline {
                bail!(
                    "port {} still in recovery after promotion; log:\n{}",
                    self.port(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Where the WAL written so far ends, as text such as `0/3000148`: on a primary
    /// `pg_current_wal_insert_lsn()` (which, unlike `pg_current_wal_lsn()`, includes commits not
    /// yet flushed under `synchronous_commit=off`), moved back over a page header it may point
    /// past, so that a standby's `pg_last_wal_replay_lsn()` reaches it exactly; on a standby
    /// `pg_last_wal_replay_lsn()`.
    pub fn wal_lsn(&self) -> Result<String> {
        self.psql(
            None,
            "WITH p AS (SELECT pg_current_wal_insert_lsn() AS l, \
               (SELECT setting::numeric FROM pg_settings WHERE name = 'wal_segment_size') AS seg, \
               (SELECT setting::numeric FROM pg_settings WHERE name = 'wal_block_size') AS blk \
             WHERE NOT pg_is_in_recovery()) \
             SELECT pg_last_wal_replay_lsn() WHERE pg_is_in_recovery() \
             UNION ALL \
             SELECT CASE WHEN (l - '0/0') % seg = 40 THEN l - 40 \
                         WHEN (l - '0/0') % blk = 24 THEN l - 24 ELSE l END FROM p",
        )
    }

    /// How many bytes of WAL this standby has still to replay to reach `primary`'s current
    /// position (0 when caught up; also 0 for a primary/promoted server).
    pub fn replay_lag_bytes(&self, primary: &PgInstance) -> Result<u64> {
        let target = primary.wal_lsn()?;
        let lag = self.psql(
            None,
            &format!(
                "SELECT CASE WHEN pg_is_in_recovery() THEN \
                 greatest(pg_wal_lsn_diff('{target}', pg_last_wal_replay_lsn()), 0)::bigint \
                 ELSE 0 END"
            ),
        )?;
        lag.parse()
            .with_context(|| format!("parsing replay lag {lag:?}"))
    }

    /// Waits until this standby has replayed all WAL `primary` had written when called (its
    /// `pg_last_wal_replay_lsn()` reaches the primary's `pg_current_wal_lsn()`).
    pub fn wait_replay_caught_up(&self, primary: &PgInstance, timeout: Duration) -> Result<()> {
        let target = primary.wal_lsn()?;
        let deadline = Instant::now() + timeout;
        let query = format!(
            "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
        );
        loop {
            if parse_bool(&self.psql(None, &query)?)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "standby on port {} did not replay up to {target} within {timeout:?} (at {}); log:\n{}",
                    self.port(),
                    self.wal_lsn().unwrap_or_default(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pauses WAL replay on this standby (`pg_wal_replay_pause()`): it keeps receiving WAL but
    /// stops applying it, so writes on the primary make it lag until
    /// [`PgInstance::resume_replay`]. Waits until the pause has taken effect.
    pub fn pause_replay(&self) -> Result<()> {
        self.psql(None, "SELECT pg_wal_replay_pause()")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.psql(None, "SELECT pg_get_wal_replay_pause_state()")?;
            if state == "paused" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "replay on port {} is {state:?}, not paused, after 30 s",
                    self.port()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resumes WAL replay after [`PgInstance::pause_replay`].
    pub fn resume_replay(&self) -> Result<()> {
        self.psql(None, "SELECT pg_wal_replay_resume()").map(drop)
    }

    /// Client connections currently open to this server, not counting the one asking.
    pub fn client_connections(&self) -> Result<u64> {
        let n = self.psql(
            None,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )?;
        n.trim()
            .parse()
            .with_context(|| format!("parsing connection count {n:?}"))
    }

    /// `pgbench -i -s SCALE -q` on this instance.
    pub fn pgbench_init(&self, scale: u32) -> Result<()> {
        let mut cmd = client_command("pgbench", self.port())?;
        cmd.args(["-i", "-q", "-s", &scale.to_string(), "postgres"]);
        let out = run_with_timeout(&mut cmd, PGBENCH_TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "{}",
                describe_failure(&format!("pgbench -i -s {scale}"), &out)
            );
        }
        Ok(())
    }

    /// Runs pgbench with `args` against this instance, or through `port_override`. See [`pgbench`].
    pub fn pgbench(&self, port_override: Option<u16>, args: &[&str]) -> Result<PgbenchReport> {
        pgbench(port_override.unwrap_or(self.port()), args)
    }

    /// Fast shutdown (SIGINT: disconnect clients, checkpoint, exit); SIGKILL after 30 s.
    /// The data directory stays; [`PgInstance::restart`] starts the server again.
    pub fn stop(&mut self) -> Result<()> {
        if self.proc.shutdown(libc::SIGINT, Duration::from_secs(30)) == Shutdown::Killed {
            bail!(
                "postgres on port {} ignored a fast shutdown for 30 s; killed. log:\n{}",
                self.port(),
                self.log()
            );
        }
        Ok(())
    }

    /// Simulates a crash: SIGKILL to the postmaster and all its backends at once (so clients'
    /// connections drop), then waits until the port refuses connections. The data directory
    /// stays; [`PgInstance::restart`] brings the server back (with crash recovery).
    pub fn kill9(&mut self) -> Result<()> {
        let exited = format!("postgres on port {} had already exited", self.port());
        self.proc
            .kill9("postgres", "postgres is not running", &exited)
    }

    /// Starts the server again, on the same port and data directory, after
    /// [`PgInstance::stop`] or [`PgInstance::kill9`].
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("postgres on port {} is still running", self.port());
        }
        // Right after a kill the old backends may still be detaching from shared memory.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e)
                    if Instant::now() < deadline
                        && self.log().contains("pre-existing shared memory block") =>
                {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        if let Some(server) = self.proc.server_mut() {
            if server.is_running() {
                // Immediate shutdown: no checkpoint, the data dir is going away anyway.
                server.signal(libc::SIGQUIT);
                if server.wait_timeout(Duration::from_secs(10)).is_none() {
                    server.set_grace(Duration::ZERO);
                }
            }
        }
        // When the fields drop, the server's guard kills whatever is left of the process group
        // (and prints the log when panicking), then its temp dir (data directory, sockets) is
        // removed.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osuser::is_root;

    const SAMPLE_15: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
starting vacuum...end.
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
number of transactions per client: 50
number of transactions actually processed: 100/100
number of failed transactions: 3 (3.000%)
latency average = 1.840 ms
initial connection time = 4.321 ms
tps = 1086.956522 (without initial connection time)
";

    #[test]
    fn parses_pgbench_summaries() {
        let r = PgbenchReport::parse(SAMPLE_15).unwrap();
        assert_eq!(r.transactions, 100);
        assert_eq!(r.failed, 3);
        assert!((r.tps - 1086.956522).abs() < 1e-6);
        assert_eq!(r.latency_avg_ms, Some(1.84));
        let old = "number of transactions actually processed: 500\n\
                   tps = 90.5 (including connections establishing)\n\
                   tps = 95.25 (excluding connections establishing)\n";
        let r = PgbenchReport::parse(old).unwrap();
        assert_eq!((r.transactions, r.failed, r.tps), (500, 0, 95.25));
        assert!(PgbenchReport::parse("connection to server failed").is_err());
    }

    #[test]
    fn finds_the_newest_server() {
        if let Some(dir) = pg_bin_dir() {
            assert!(dir.join("initdb").is_file(), "{}", dir.display());
        }
    }

    #[test]
    fn real_postgres_start_query_pgbench_kill9_restart() {
        crate::require_postgres_or_return!();
        let _serial = crate::SERVER_TESTS
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut pg = PgInstance::start_named("alpha").unwrap();
        assert_eq!(pg.psql(None, "select 1").unwrap(), "1");
        assert_eq!(pg.node_name(None).unwrap(), "alpha");
        assert_eq!(pg.psql(None, "show fsync").unwrap(), "off");
        assert_eq!(pg.psql(None, "show max_connections").unwrap(), "200");
        assert_eq!(pg.psql(None, "show cluster_name").unwrap(), "alpha");
        assert_eq!(
            pg.psql(None, "select 1 union all select 2").unwrap(),
            "1\n2"
        );
        let err = pg
            .psql(None, "select * from no_such_table")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_table"), "{err}");
        if is_root() {
            let owner = pg
                .psql(None, "select current_setting('data_directory')")
                .unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_ne!(
                std::fs::metadata(owner).unwrap().uid(),
                0,
                "postgres must not run as root"
            );
        }

        pg.pgbench_init(1).unwrap();
        let report = pg
            .pgbench(None, &["-c", "2", "-j", "1", "-t", "50"])
            .unwrap();
        assert_eq!(report.transactions, 100, "{}", report.raw);
        assert_eq!(report.failed, 0);
        assert_eq!(report.exit_code, Some(0));
        assert!(report.tps > 0.0);

        let port = pg.port();
        pg.kill9().unwrap();
        assert!(!pg.is_running());
        assert!(psql(port, "select 1").is_err());
        pg.restart().unwrap();
        assert_eq!(pg.port(), port);
        assert_eq!(node_name_at(port).unwrap(), "alpha");
        pg.stop().unwrap();
        assert!(!pg.is_running());

        let data_dir = pg.data_dir().to_path_buf();
        assert!(data_dir.exists());
        drop(pg);
        assert!(!data_dir.exists(), "data dir removed on drop");
    }

    #[test]
    fn two_instances_have_distinct_ports_and_names() {
        crate::require_postgres_or_return!();
        let _serial = crate::SERVER_TESTS
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let a = PgInstance::start_named("a").unwrap();
        let b = PgInstance::start_named("b'quote").unwrap();
        assert_ne!(a.port(), b.port());
        assert_eq!(node_name_at(a.port()).unwrap(), "a");
        assert_eq!(b.node_name(None).unwrap(), "b'quote");
        let pid = a.pid().unwrap();
        let base = a.base_dir().to_path_buf();
        drop(a);
        // SAFETY: signal 0 checks existence only.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z");
        assert!(!alive, "postmaster survived drop");
        assert!(!base.exists());
        assert_eq!(b.client_connections().unwrap(), 0);
    }

    #[test]
    fn streaming_replication_lag_and_promotion() {
        crate::require_postgres_or_return!();
        let _serial = crate::SERVER_TESTS
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let primary = PgInstance::start_primary("prim").unwrap();
        primary
            .psql(None, "CREATE TABLE t(i int); INSERT INTO t VALUES (1)")
            .unwrap();
        let standby = PgInstance::start_standby(&primary, "stby").unwrap();
        assert_ne!(standby.port(), primary.port());
        assert!(standby.is_in_recovery().unwrap());
        assert!(!primary.is_in_recovery().unwrap());
        assert_eq!(standby.node_name(None).unwrap(), "stby");
        assert_eq!(primary.node_name(None).unwrap(), "prim");
        // The node table is replicated: it holds the primary's name on both.
        assert_eq!(
            standby
                .psql(None, "SELECT name FROM switchyard_node")
                .unwrap(),
            "prim"
        );
        assert_eq!(
            primary
                .psql(None, "SELECT application_name FROM pg_stat_replication")
                .unwrap(),
            "stby"
        );

        primary.psql(None, "INSERT INTO t VALUES (2)").unwrap();
        standby
            .wait_replay_caught_up(&primary, Duration::from_secs(30))
            .unwrap();
        assert_eq!(standby.psql(None, "SELECT sum(i) FROM t").unwrap(), "3");
        assert_eq!(standby.replay_lag_bytes(&primary).unwrap(), 0);
        let err = standby
            .psql(None, "INSERT INTO t VALUES (100)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("read-only transaction"), "{err}");

        // Lag: replay paused while the primary writes.
        standby.pause_replay().unwrap();
        primary
            .psql(None, "INSERT INTO t SELECT generate_series(1, 1000)")
            .unwrap();
        assert!(standby.replay_lag_bytes(&primary).unwrap() > 0);
        assert_eq!(standby.psql(None, "SELECT sum(i) FROM t").unwrap(), "3");
        assert!(standby
            .wait_replay_caught_up(&primary, Duration::from_millis(300))
            .is_err());
        standby.resume_replay().unwrap();
        standby
            .wait_replay_caught_up(&primary, Duration::from_secs(30))
            .unwrap();
        assert_eq!(
            standby.psql(None, "SELECT count(*) FROM t").unwrap(),
            "1002"
        );

        standby.promote().unwrap();
        assert!(!standby.is_in_recovery().unwrap());
        standby.psql(None, "INSERT INTO t VALUES (100)").unwrap();
        assert_eq!(standby.node_name(None).unwrap(), "stby");
        assert_eq!(standby.replay_lag_bytes(&primary).unwrap(), 0);
    }
}
