//! The replay's output directory (`--out`): owned by one replay at a time, and its result
//! files written as one set.
//!
//! **Owned.** [`OutDir::lock`] takes an exclusive lock on `<out>/.lock` (`flock`, held until
//! the process ends, however it ends) before anything is written there — the TikTok sink's
//! `audiences.json` included — so a second replay into the same directory stops at once with
//! [`OutputError::Busy`] instead of mixing its files with the first one's. The lock file stays
//! (removing it would let two processes lock two different files); it holds the owner's pid,
//! for the message.
//!
//! **Atomic.** The set — `dead-letter.jsonl`, `decisions.jsonl`, `summary.json` — is written
//! as `<out>/.<name>.tmp` files while the replay runs; [`OutputSet::commit`] flushes and
//! fsyncs them, removes the old `summary.json`, then renames the others into place and
//! `summary.json` last, fsyncing the directory between the steps. So `summary.json` marks a
//! complete set: while it is there, the three files are one replay's output. A replay that
//! fails or is killed before the commit leaves the previous set as it was (and, when killed,
//! its `.tmp` files, which the next replay replaces). "At all" has one gap: a crash during
//! the commit's few renames (microseconds, after everything is written and synced) can leave
//! a directory without `summary.json` and with some new files beside old ones — never a
//! `summary.json` beside files of another run.
//!
//! Not part of the set: `audiences.json`, the TikTok sink's durable store of created
//! audiences, written (atomically, on its own) as audiences are created; `sink-failed.jsonl`,
//! written by the sink when it ends.
//!
//! Every I/O error names its file: `cannot write out/.decisions.jsonl.tmp: No space left on
//! device (os error 28)`.

use std::fs::File;
use std::io::{self, BufWriter, Read as _, Seek as _, Write};
use std::path::{Path, PathBuf};

/// The files of the set, in commit order: `summary.json` last.
pub const SET: [&str; 3] = ["dead-letter.jsonl", "decisions.jsonl", "summary.json"];

/// What can go wrong with the output directory.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{dir} is in use by another replay{owner}, which holds {lock}; wait for it to end or \
         choose another --out"
    )]
    Busy {
        dir: PathBuf,
        lock: PathBuf,
        /// ` (pid N)` when the lock file says so.
        owner: String,
    },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl OutputError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> OutputError {
        OutputError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// An I/O error that names its file (its kind kept).
fn named(action: &'static str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), OutputError::io(action, path, e))
}

/// An output directory this process owns (see the module docs).
#[derive(Debug)]
pub struct OutDir {
    path: PathBuf,
    /// Locked for as long as it is open.
    _lock: File,
}

impl OutDir {
    /// Creates `path` if needed and locks it, or says who holds it.
    pub fn lock(path: &Path) -> Result<OutDir, OutputError> {
        std::fs::create_dir_all(path).map_err(|e| OutputError::io("create", path, e))?;
        let lock_path = path.join(".lock");
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| OutputError::io("create", &lock_path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let owner = match pid.trim().parse::<u32>() {
                    Ok(pid) => format!(" (pid {pid})"),
                    Err(_) => String::new(),
                };
                return Err(OutputError::Busy {
                    dir: path.to_owned(),
                    lock: lock_path,
                    owner,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(OutputError::io("lock", &lock_path, e))
            }
        }
        // Informational only: who holds it.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()));
        Ok(OutDir {
            path: path.to_owned(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a new set: its temporary files, created (or emptied, when a killed replay left
    /// them) now.
    pub fn begin(&self) -> Result<OutputSet<'_>, OutputError> {
        let mut files = Vec::with_capacity(SET.len());
        for name in SET {
            let tmp = self.path.join(format!(".{name}.tmp"));
            let file = File::create(&tmp).map_err(|e| OutputError::io("create", &tmp, e))?;
            files.push(Pending {
                name,
                w: BufWriter::with_capacity(1 << 16, Named { path: tmp, file }),
            });
        }
        Ok(OutputSet {
            dir: self,
            files,
            committed: false,
        })
    }

    fn sync(&self) -> io::Result<()> {
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(|e| named("sync", &self.path, e))
    }
}

/// A file being written: every error names it.
#[derive(Debug)]
pub struct Named {
    path: PathBuf,
    file: File,
}

impl Write for Named {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .write(buf)
            .map_err(|e| named("write", &self.path, e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().map_err(|e| named("write", &self.path, e))
    }
}

#[derive(Debug)]
struct Pending {
    name: &'static str,
    w: BufWriter<Named>,
}

/// A set of output files being written; dropped without [`commit`](Self::commit), it removes
/// its temporary files and leaves the previous set as it was.
#[derive(Debug)]
pub struct OutputSet<'d> {
    dir: &'d OutDir,
    files: Vec<Pending>,
    committed: bool,
}

impl OutputSet<'_> {
    fn file(&mut self, name: &str) -> &mut BufWriter<Named> {
        let f = self.files.iter_mut().find(|f| f.name == name);
        &mut f.expect("a file of the set").w
    }

    pub fn dead_letter(&mut self) -> &mut BufWriter<Named> {
        self.file("dead-letter.jsonl")
    }

    pub fn decisions(&mut self) -> &mut BufWriter<Named> {
        self.file("decisions.jsonl")
    }

    pub fn summary(&mut self) -> &mut BufWriter<Named> {
        self.file("summary.json")
    }

    /// Makes the set the directory's output (see the module docs for the order of steps).
    pub fn commit(mut self) -> io::Result<()> {
        for f in &mut self.files {
            f.w.flush()?;
            let n = f.w.get_ref();
            n.file.sync_all().map_err(|e| named("sync", &n.path, e))?;
        }
        let dir = self.dir;
        let marker = dir.path.join("summary.json");
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(named("remove", &marker, e))
            }
            _ => {}
        }
        dir.sync()?;
        for (i, f) in self.files.iter().enumerate() {
            if i + 1 == self.files.len() {
                // Everything before the marker is in place before the marker is.
                dir.sync()?;
            }
            let to = dir.path.join(f.name);
            std::fs::rename(&f.w.get_ref().path, &to).map_err(|e| named("write", &to, e))?;
        }
        dir.sync()?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for OutputSet<'_> {
    fn drop(&mut self) {
        if !self.committed {
            for f in &self.files {
                let _ = std::fs::remove_file(&f.w.get_ref().path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_set(out: &OutDir, text: &str) {
        let mut set = out.begin().unwrap();
        for name in SET {
            set.file(name)
                .write_all(format!("{name} {text}").as_bytes())
                .unwrap();
        }
        set.commit().unwrap();
    }

    fn read_set(dir: &Path) -> Vec<String> {
        SET.iter()
            .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
            .collect()
    }

    /// The names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_set_appears_on_commit_and_an_abandoned_one_leaves_the_old_set() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out");
        let out = OutDir::lock(&path).unwrap();
        write_set(&out, "one");
        let one = read_set(&path);
        assert_eq!(one[2], "summary.json one");

        let mut set = out.begin().unwrap();
        set.decisions().write_all(b"half of two").unwrap();
        set.decisions().flush().unwrap();
        assert!(path.join(".decisions.jsonl.tmp").exists());
        assert_eq!(read_set(&path), one, "nothing moves before the commit");
        drop(set);
        assert_eq!(read_set(&path), one);
        assert_eq!(
            listing(&path),
            [
                ".lock",
                "dead-letter.jsonl",
                "decisions.jsonl",
                "summary.json"
            ],
            "the abandoned set's temporary files are gone"
        );

        write_set(&out, "three");
        assert_eq!(read_set(&path)[1], "decisions.jsonl three");
        assert_eq!(
            listing(&path),
            [
                ".lock",
                "dead-letter.jsonl",
                "decisions.jsonl",
                "summary.json"
            ]
        );
    }

    #[test]
    fn a_second_owner_is_refused_until_the_first_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let first = OutDir::lock(tmp.path()).unwrap();
        let err = OutDir::lock(tmp.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, OutputError::Busy { .. }), "{text}");
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "names the owner: {text}"
        );
        assert!(text.contains(".lock"), "{text}");
        drop(first);
        OutDir::lock(tmp.path()).expect("free again");
    }

    /// A write that fails (here: the disk is full) names the file it was writing.
    #[cfg(target_os = "linux")]
    #[test]
    fn write_errors_name_their_file() {
        let full = File::options().write(true).open("/dev/full").unwrap();
        let mut w = BufWriter::new(Named {
            path: PathBuf::from("out/.decisions.jsonl.tmp"),
            file: full,
        });
        w.write_all(&[b'x'; 100]).unwrap();
        let err = w.flush().unwrap_err();
        assert_eq!(err.to_string(), "cannot write out/.decisions.jsonl.tmp");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(
            chain.starts_with("cannot write out/.decisions.jsonl.tmp: No space left on device"),
            "{chain}"
        );
    }
}
