//! The persistent TCP transport: a memory-mapped send queue per connection
//! (`queue`) that survives crashes, and the socket engine (`link`) that
//! frames, acknowledges, resends and heartbeats over it. [`inspect`] reads
//! (and resets) queue files of any configuration, for the operator's tool
//! `tcpshm-ptcp`.

pub(crate) mod format;
pub mod inspect;
pub(crate) mod link;
pub(crate) mod queue;
pub(crate) mod wire;

pub use queue::{Durability, PTCP_MAGIC, PTCP_VERSION};

use std::path::{Path, PathBuf};

/// Path of the queue file of messages from `local` to `remote`.
pub fn ptcp_path(dir: &Path, local: &str, remote: &str) -> PathBuf {
    dir.join(format!("{local}_{remote}.ptcp"))
}

/// Path of the file in which a client remembers the last server it logged in to.
pub fn lastserver_path(dir: &Path, client: &str) -> PathBuf {
    dir.join(format!("{client}.lastserver"))
}

/// Path of the file a client holds locked while it runs, so that one name
/// in one directory is one client at a time (its contents are unused).
pub fn lock_path(dir: &Path, client: &str) -> PathBuf {
    dir.join(format!("{client}.lock"))
}

/// Whether `a` is at or after `b` in wrapping u32 sequence space.
#[inline]
pub(crate) fn seq_not_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Whether `start <= ack <= end` in wrapping u32 sequence space.
#[inline]
pub(crate) fn ack_in_range(ack: u32, start: u32, end: u32) -> bool {
    seq_not_before(ack, start) && seq_not_before(end, ack)
}
