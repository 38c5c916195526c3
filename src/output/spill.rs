//! Items kept on disk until the end of a replay, so that what a replay holds does not grow
//! with the recording: its decisions and audience ops go to an unnamed temporary file in the
//! output directory (where the user chose to put the outputs' bytes — not `$TMPDIR`, often a
//! memory-backed tmpfs in a container; unnamed, so it is gone when the process ends however
//! it ends) and are read back, in the order written, once the input is done.
//!
//! Each item is a 4-byte little-endian length and its postcard encoding. An error writing
//! is kept and returned by [`Spill::read`]: the activate thread that writes has no one to
//! hand it to before then. Errors name the directory: `cannot write a temporary file in
//! out: No space left on device (os error 28)`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Items written in order, to be read back once (see the module docs).
#[derive(Debug)]
pub struct Spill<T> {
    dir: PathBuf,
    w: BufWriter<File>,
    buf: Vec<u8>,
    len: u64,
    error: Option<io::Error>,
    _items: PhantomData<fn(T)>,
}

impl<T: Serialize + DeserializeOwned> Spill<T> {
    /// A spill into an unnamed file in `dir`.
    pub fn new(dir: &Path) -> io::Result<Spill<T>> {
        let file = tempfile::tempfile_in(dir).map_err(|e| named(dir, e))?;
        Ok(Spill {
            dir: dir.to_path_buf(),
            w: BufWriter::with_capacity(256 * 1024, file),
            buf: Vec::with_capacity(256),
            len: 0,
            error: None,
            _items: PhantomData,
        })
    }

    /// Appends `item` (after an error, nothing more is written).
    pub fn push(&mut self, item: &T) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write(item) {
            self.error = Some(e);
        }
    }

    fn write(&mut self, item: &T) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        let mut buf = postcard::to_extend(item, std::mem::take(&mut self.buf))
            .map_err(|e| io::Error::other(format!("cannot encode a kept item: {e}")))?;
        let n = u32::try_from(buf.len() - 4).map_err(io::Error::other)?;
        buf[..4].copy_from_slice(&n.to_le_bytes());
        self.w.write_all(&buf)?;
        self.buf = buf;
        self.len += 1;
        Ok(())
    }

    /// Items pushed.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items, in the order pushed; the first error writing them, if any.
    pub fn read(self) -> io::Result<SpillReader<T>> {
        let dir = self.dir;
        if let Some(e) = self.error {
            return Err(named(&dir, e));
        }
        let mut file = (self.w.into_inner()).map_err(|e| named(&dir, e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| named(&dir, e))?;
        Ok(SpillReader {
            r: BufReader::with_capacity(256 * 1024, file),
            buf: self.buf,
            left: self.len,
            _items: PhantomData,
        })
    }
}

fn named(dir: &Path, e: io::Error) -> io::Error {
    let what = format!("cannot write a temporary file in {}: {e}", dir.display());
    io::Error::new(e.kind(), what)
}

/// Reads a [`Spill`] back.
#[derive(Debug)]
pub struct SpillReader<T> {
    r: BufReader<File>,
    buf: Vec<u8>,
    left: u64,
    _items: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> SpillReader<T> {
    fn next_item(&mut self) -> io::Result<T> {
        let mut n = [0; 4];
        self.r.read_exact(&mut n)?;
        self.buf.resize(u32::from_le_bytes(n) as usize, 0);
        self.r.read_exact(&mut self.buf)?;
        postcard::from_bytes(&self.buf)
            .map_err(|e| io::Error::other(format!("cannot decode a kept item: {e}")))
    }
}

impl<T: DeserializeOwned> Iterator for SpillReader<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = self.next_item();
        if item.is_err() {
            self.left = 0;
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.left).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_in_the_order_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::<(u64, String, Option<[u8; 32]>)>::new(dir.path()).unwrap();
        let items: Vec<_> = (0..10_000u64)
            .map(|i| {
                (
                    i * 7919,
                    "u".repeat((i % 40) as usize),
                    (i % 3 == 0).then_some([i as u8; 32]),
                )
            })
            .collect();
        for item in &items {
            s.push(item);
        }
        assert_eq!(s.len(), 10_000);
        let back: Vec<_> = s.read().unwrap().collect::<io::Result<_>>().unwrap();
        assert_eq!(back, items);
        let empty = Spill::<u8>::new(dir.path()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.read().unwrap().count(), 0);
        let names = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names, 0, "the spills leave no file behind");
    }
}
