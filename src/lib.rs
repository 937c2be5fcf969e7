//! tcpshm: loss-free persistent TCP and shared-memory message queues.
#![warn(missing_docs)]

pub mod client;
pub mod conf;
pub mod connection;
pub mod error;
pub mod msg;
pub mod ptcp;
pub mod server;
pub mod shm;

pub use conf::{Conf, DefaultConf, LoginData, ServerConf};
pub use error::{CloseReason, Error};
pub use msg::{Msg, MsgHeader};
pub use client::{ClientHandler, ClientShm, ClientTcp, ConnectError, TcpShmClient};
pub use connection::{Connection, Slot};
pub use msg::{LoginMsg, LoginRspMsg, LoginStatus, SeqMismatch};
pub use ptcp::Durability;
pub use server::{ServerCtl, ServerHandler, ShmGroup, TcpGroup, TcpShmServer};
