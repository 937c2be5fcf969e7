#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod client;
pub mod conf;
pub mod connection;
pub mod error;
mod files;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod msg;
pub mod net;
pub mod ptcp;
pub mod server;
pub mod shm;
#[cfg(test)]
mod sim;

pub use client::{ClientHandler, ClientShm, ClientTcp, ConnectError, TcpShmClient};
pub use conf::{Conf, DefaultConf, LoginData, ServerConf};
pub use connection::{Connection, Slot};
pub use error::{CloseReason, Error};
pub use msg::{LoginMsg, LoginRspMsg, LoginStatus, SeqMismatch};
pub use msg::{Msg, MsgHeader};
pub use ptcp::Durability;
pub use server::{ServerCtl, ServerHandler, ShmGroup, TcpGroup, TcpShmServer};
