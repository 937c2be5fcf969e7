//! tcpshm: loss-free persistent TCP and shared-memory message queues.
#![warn(missing_docs)]

pub mod conf;
pub mod error;
pub mod msg;
pub mod ptcp;
pub mod shm;

pub use conf::{Conf, DefaultConf, LoginData, ServerConf};
pub use error::{CloseReason, Error};
pub use msg::{Msg, MsgHeader};
