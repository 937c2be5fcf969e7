//! The shared-memory transport: one single-producer single-consumer queue of
//! variable-size messages per direction, each in a POSIX shared-memory object
//! `/dev/shm/<sender>_<receiver>.shm` laid out exactly as the C++ `SPSCVarQueue`
//! (PROTOCOL.md), so a C++ peer can share it. [`inspect`] reads an object
//! of any queue size, for the operator's tool `tcpshm-ptcp`.

pub mod inspect;
pub(crate) mod layout;
#[cfg(all(test, tcpshm_loom))]
mod loom_tests;
mod queue;

pub(crate) use layout::ShmRegion;
pub use layout::SHM_DIR;
pub(crate) use queue::{ShmReceiver, ShmSender};

use std::path::PathBuf;

/// Path of the shared-memory object carrying messages from `sender` to `receiver`.
pub fn shm_path(sender: &str, receiver: &str) -> PathBuf {
    PathBuf::from(SHM_DIR).join(format!("{sender}_{receiver}.shm"))
}
