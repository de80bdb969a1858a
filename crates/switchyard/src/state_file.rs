//! The runtime state file (`runtime-state-file PATH` in `global`): Runtime API changes and
//! check states written after every change and re-applied at start (and reload), so an
//! operator's `add server`, `set server ... state maint` or `set weight` is never lost.
//!
//! Writes are atomic (temporary file, fsync, rename, fsync of the directory): a crash
//! leaves either the old or the new state, never a torn file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use switchyard_api::command::{self, Command};
use switchyard_api::format::replies;
use switchyard_engine::persist::{RuntimeState, STATE_VERSION};
use switchyard_engine::Runtime;

use crate::runtime_api::Executor;

/// Check transitions often come in bursts (a node dies, several backends notice): one write
/// covers them.
const WRITE_DELAY: Duration = Duration::from_millis(50);

pub struct StateFile {
    path: PathBuf,
    /// Serializes writers (Runtime API connections and the check-transition task).
    writing: Mutex<()>,
}

impl StateFile {
    pub fn new(path: PathBuf) -> Self {
        StateFile {
            path,
            writing: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the saved state; `None` when there is none yet.
    pub fn load(&self) -> anyhow::Result<Option<RuntimeState>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()))
            }
        };
        let state: RuntimeState = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a Switchyard runtime state file",
                self.path.display()
            )
        })?;
        if state.version != STATE_VERSION {
            anyhow::bail!(
                "{}: state format version {} is not supported (expected {STATE_VERSION})",
                self.path.display(),
                state.version
            );
        }
        Ok(Some(state))
    }

    /// Captures the runtime's state and writes it atomically.
    pub fn save(&self, runtime: &Runtime) -> anyhow::Result<()> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = runtime.capture_state();
        let mut text = serde_json::to_string_pretty(&state).context("encoding the state")?;
        text.push('\n');
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            // The rename is durable only once the directory entry is.
            File::open(dir)?.sync_all()
        };
        write().with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// A state file that cannot be read is moved aside (never deleted: it may be the only
    /// record of an operator's changes) so that the next write does not replace it.
    pub fn quarantine(&self) -> Option<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut name = self.path.file_name()?.to_os_string();
        name.push(format!(".bad-{stamp}"));
        let aside = self.path.with_file_name(name);
        fs::rename(&self.path, &aside).ok()?;
        Some(aside)
    }

    /// Re-creates dynamic servers and re-applies saved changes; returns notices for what
    /// could not be restored.
    pub async fn restore(&self, executor: &Executor, runtime: &Runtime) -> Vec<String> {
        let state = match self.load() {
            Ok(Some(state)) => state,
            Ok(None) => return Vec::new(),
            Err(error) => {
                let moved = match self.quarantine() {
                    Some(aside) => format!("; moved to {}", aside.display()),
                    None => String::new(),
                };
                return vec![format!("{error:#}{moved}; starting from the configuration")];
            }
        };
        let mut notices = Vec::new();
        for (backend, saved) in &state.backends {
            for server in &saved.servers {
                let Some(spec) = &server.added else { continue };
                if runtime.server(backend, &server.name).is_ok() {
                    // Now defined by the configuration: apply_state reports it.
                    continue;
                }
                let mut line = format!("add server {backend}/{} {spec}", server.name);
                if let Some(id) = server.id {
                    line.push_str(&format!(" id {id}"));
                }
                let reply = match command::parse(&line) {
                    Ok(command @ Command::AddServer { .. }) => executor.run(command).await,
                    Ok(_) | Err(_) => "not an 'add server' command".to_string(),
                };
                if reply != replies::ADD_SERVER_OK {
                    notices.push(format!(
                        "cannot re-create server '{backend}/{}' ({line}): {}",
                        server.name,
                        reply.trim_end()
                    ));
                }
            }
        }
        notices.extend(runtime.apply_state(&state));
        notices
    }

    /// Rewrites the file whenever a check changes a server's state, until the engine stops.
    /// `current` gives the engine running now (a reload replaces it; all engines share one
    /// change signal).
    pub async fn follow_changes(
        self: Arc<Self>,
        current: impl Fn() -> Arc<Runtime>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let changes = Arc::clone(&current().changes);
            tokio::select! {
                _ = changes.notified() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            tokio::time::sleep(WRITE_DELAY).await;
            if let Err(error) = self.save(&current()) {
                tracing::error!("{error:#}");
            }
        }
    }
}

/// Commands whose success changes what the state file holds.
pub fn changes_state(command: &Command) -> bool {
    matches!(
        command,
        Command::AddServer { .. }
            | Command::DelServer(_)
            | Command::SetServer(..)
            | Command::EnableServer(_)
            | Command::DisableServer(_)
            | Command::EnableHealth(_)
            | Command::DisableHealth(_)
            | Command::EnableAgent(_)
            | Command::DisableAgent(_)
            | Command::SetWeight(..)
            | Command::SetMaxconnServer(..)
    )
}
