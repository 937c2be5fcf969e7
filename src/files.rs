//! The files a side keeps: each has one owner at a time, is private to its
//! user, and is replaced whole or not at all.
//!
//! * One owner: a queue file, a shared-memory producer end and a client's
//!   identity are taken with an exclusive, non-blocking advisory lock
//!   (`flock`) for as long as they are open. A second owner, in this
//!   process or another, gets [`Error::InUse`] naming the file instead of
//!   a mapping it would share: two writers of one queue is a data race.
//!   The lock goes with the descriptor, so a crashed owner leaves none.
//! * Private: files and objects we create are mode 0600.
//! * Whole: a small file that is rewritten (the client's last server name)
//!   is written beside its place and renamed over it, so a crash leaves the
//!   old contents or the new, never a mix or nothing.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::Error;

/// Mode of the files and shared-memory objects we create.
pub(crate) const PRIVATE: u32 = 0o600;

/// Takes the exclusive lock that makes `file` (opened from `path`) ours,
/// without waiting: [`Error::InUse`] if another owner holds it.
pub(crate) fn lock_exclusive(file: &File, path: &Path) -> Result<(), Error> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Error::InUse { path: path.to_owned() }),
        Err(TryLockError::Error(e)) => Err(Error::file("lock", path, e)),
    }
}

/// Options that create a missing file with mode 0600, for reading and writing.
pub(crate) fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false).mode(PRIVATE);
    o
}

/// Replaces the contents of `path` with `bytes` at once: written to a
/// temporary file beside it, synced, renamed over it, and the directory
/// synced so the rename itself survives a power loss.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}
