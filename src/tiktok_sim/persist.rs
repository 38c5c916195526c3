//! The optional `--state-file`: a JSON [`Snapshot`] of audiences and members (never tokens).
//!
//! It is read once by [`Simulator::new`](super::Simulator::new) if it exists. While serving, a
//! writer task rewrites it after every change (changes arriving while a write is in progress
//! are coalesced into the next write) and once more at shutdown. Each write goes to a
//! temporary file that is then renamed over the old one, so a crash never leaves half a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{oneshot, Notify};

use super::state::Snapshot;
use super::{SimError, Simulator};

/// Where to write, and the signal that something changed.
#[derive(Debug)]
pub(crate) struct Persist {
    pub path: PathBuf,
    pub changed: Notify,
}

/// The snapshot at `path`, or `None` if there is no file yet.
pub(crate) fn load(path: &Path) -> Result<Option<Snapshot>, SimError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SimError::StateRead {
                path: path.to_owned(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| SimError::StateParse {
            path: path.to_owned(),
            source,
        })
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

async fn write_now(sim: &Simulator, persist: &Arc<Persist>) {
    let snapshot = sim.lock().registry.snapshot();
    let bytes = match serde_json::to_vec_pretty(&snapshot) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode simulator state");
            return;
        }
    };
    let p = Arc::clone(persist);
    let res = tokio::task::spawn_blocking(move || write(&p.path, &bytes)).await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(path = %persist.path.display(), error = %e, "cannot write state file")
        }
        Err(e) => tracing::warn!(error = %e, "state file writer panicked"),
    }
}

/// Writes after each change until `stop` fires, then writes a final snapshot.
pub(crate) async fn writer(sim: Simulator, persist: Arc<Persist>, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = persist.changed.notified() => write_now(&sim, &persist).await,
            _ = &mut stop => break,
        }
    }
    write_now(&sim, &persist).await;
}
