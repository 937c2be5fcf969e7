//! [`TcpShmServer`]: accepts logins and serves connections in groups.
//!
//! A server is three kinds of parts: one [`ServerCtl`] (listening, logins,
//! heartbeats of shm connections, disconnect reports), one [`TcpGroup`] per
//! TCP group and one [`ShmGroup`] per shared-memory group (each polls the
//! messages of its connections). [`TcpShmServer`] holds them all for a
//! single thread; [`TcpShmServer::into_parts`] hands them out, each `Send`, so
//! any thread model from one thread to one per group plus control is a matter
//! of where the user calls the polls.
//!
//! Every connection slot is owned by one part at a time: the control part
//! while the slot is idle or logging in, the group while the connection is
//! live. Ownership moves through a lock-free handoff (`handoff.rs`) with
//! acquire/release ordering, so a group never touches a slot the control part
//! is reusing: the fast-reconnect race of the C++ original (EBADF on the new
//! socket) cannot happen.

mod ctl;
mod group;
mod handoff;

pub use ctl::ServerCtl;
pub use group::{ShmGroup, TcpGroup};

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use crate::conf::{Checked, ServerConf};
use crate::connection::Connection;
use crate::error::{CloseReason, Error};
use crate::msg::{LoginMsg, Msg, SeqMismatch};
use crate::ptcp::link::RecvBuf;
use crate::ptcp::Durability;
use crate::shm::ShmReceiver;
use handoff::{HandoffCell, Signal};

/// Callbacks of a server. Only [`on_client_msg`](Self::on_client_msg) is
/// required. Each polling thread passes its own handler; the control part
/// calls all but `on_client_msg`, the groups call only `on_client_msg`.
pub trait ServerHandler<C: ServerConf> {
    /// A system call of the control part failed (e.g. `accept` with EMFILE).
    fn on_system_error(&mut self, error: &Error) {
        let _ = error;
    }

    /// A client logged in with a well-formed login. Return the group to serve
    /// it in (a TCP or shm group, as `login.use_shm` says), or reject it with
    /// a message (`None`: "Login Reject"); `rsp_user_data` goes back in the
    /// response either way. A later check can still refuse the login, so
    /// wait for [`on_client_logon`](Self::on_client_logon). Default: group 0.
    fn on_new_connection(
        &mut self,
        peer: SocketAddr,
        login: &LoginMsg<C>,
        rsp_user_data: &mut C::LoginRspUserData,
    ) -> Result<usize, Option<String>> {
        let _ = (peer, login, rsp_user_data);
        Ok(0)
    }

    /// A client's queue files could not be opened or are corrupt; its login
    /// was answered "System error".
    fn on_client_file_error(&mut self, conn: &Connection<C>, error: &Error) {
        let _ = (conn, error);
    }

    /// A client's sequence numbers disagree with ours; its login was refused.
    fn on_seq_number_mismatch(&mut self, conn: &Connection<C>, mismatch: &SeqMismatch) {
        let _ = (conn, mismatch);
    }

    /// A client logged in; the connection is about to go live in its group.
    fn on_client_logon(&mut self, peer: SocketAddr, conn: &mut Connection<C>) {
        let _ = (peer, conn);
    }

    /// A client's connection closed.
    fn on_client_disconnected(&mut self, conn: &mut Connection<C>, reason: CloseReason, errno: i32) {
        let _ = (conn, reason, errno);
    }

    /// A message from a client. Call `conn.pop()` once done with it, or it is
    /// delivered again by the next poll.
    fn on_client_msg(&mut self, conn: &mut Connection<C>, msg: Msg<'_>);
}

/// The receive side of a live connection.
pub(crate) enum Rx<C: ServerConf> {
    Tcp(RecvBuf<C>),
    Shm(ShmReceiver),
}

/// A connection slot's contents once a client name is bound to it.
pub(crate) struct SlotConn<C: ServerConf> {
    pub(crate) conn: Connection<C>,
    pub(crate) rx: Option<Rx<C>>,
}

/// What the control part and one group share.
pub(crate) struct GroupShared<C: ServerConf> {
    pub(crate) slots: Box<[HandoffCell<Option<SlotConn<C>>>]>,
    /// Raised by the control part after handing a slot to the group.
    pub(crate) to_group: Signal,
    /// Raised by the group after handing a slot back.
    pub(crate) to_ctl: Signal,
}

impl<C: ServerConf> GroupShared<C> {
    fn new(slots: usize) -> Arc<Self> {
        Arc::new(GroupShared {
            slots: (0..slots).map(|_| HandoffCell::new(None)).collect(),
            to_group: Signal::new(),
            to_ctl: Signal::new(),
        })
    }
}

/// A tcpshm server on one thread; see [`into_parts`](Self::into_parts) for more.
pub struct TcpShmServer<C: ServerConf> {
    ctl: ServerCtl<C>,
    tcp: Vec<TcpGroup<C>>,
    shm: Vec<ShmGroup<C>>,
}

impl<C: ServerConf> TcpShmServer<C> {
    /// A server named `name` keeping its queue files in `ptcp_dir` (created
    /// if missing), with queue files never flushed ([`Durability::Never`]).
    pub fn new(name: &str, ptcp_dir: impl AsRef<Path>) -> Result<Self, Error> {
        Self::with_durability(name, ptcp_dir, Durability::Never)
    }

    /// As [`new`](Self::new), with a durability policy for the queue files.
    pub fn with_durability(name: &str, ptcp_dir: impl AsRef<Path>, durability: Durability) -> Result<Self, Error> {
        #[allow(clippy::let_unit_value)]
        let () = Checked::<C>::SERVER_CONF;
        let tcp: Vec<_> = (0..C::MAX_TCP_GRPS).map(|_| GroupShared::new(C::MAX_TCP_CONNS_PER_GRP)).collect();
        let shm: Vec<_> = (0..C::MAX_SHM_GRPS).map(|_| GroupShared::new(C::MAX_SHM_CONNS_PER_GRP)).collect();
        let ctl = ServerCtl::new(name, ptcp_dir.as_ref(), durability, &tcp, &shm)?;
        Ok(TcpShmServer {
            ctl,
            tcp: tcp.into_iter().map(TcpGroup::new).collect(),
            shm: shm.into_iter().map(ShmGroup::new).collect(),
        })
    }

    /// Starts listening on `addr` (IPv4 or IPv6; port 0 picks a free port,
    /// see [`local_addr`](Self::local_addr)).
    pub fn start<A: ToSocketAddrs>(&mut self, addr: A) -> Result<(), Error> {
        self.ctl.start(addr)
    }

    /// The address the server listens on, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.ctl.local_addr()
    }

    /// Polls the control part: accepts at most one socket, reads logins,
    /// keeps shm connections' sockets alive and reports disconnects.
    ///
    /// How often: every millisecond or so is plenty. Each call makes system
    /// calls even when there is nothing to do (an `accept` on the listening
    /// socket, a read per socket awaiting its login and per shm connection),
    /// several µs on some machines, so a thread that also polls groups
    /// should call this on a timer rather than on every turn of its loop, or
    /// every round trip pays for it. Logins and disconnect reports wait for
    /// it (one socket is accepted per call), and it sends and reads the
    /// heartbeats of shm connections: call it several times per
    /// `HEARTBEAT_INTERVAL`, or an idle shm peer may hit its
    /// `CONNECTION_TIMEOUT`. TCP connections' heartbeats are their group's.
    pub fn poll_ctl(&mut self, now: i64, handler: &mut impl ServerHandler<C>) {
        self.ctl.poll(now, handler)
    }

    /// Polls TCP group `grp` (panics if `grp >= MAX_TCP_GRPS`).
    pub fn poll_tcp(&mut self, now: i64, grp: usize, handler: &mut impl ServerHandler<C>) {
        self.tcp[grp].poll(now, handler)
    }

    /// Polls shm group `grp` (panics if `grp >= MAX_SHM_GRPS`).
    pub fn poll_shm(&mut self, grp: usize, handler: &mut impl ServerHandler<C>) {
        self.shm[grp].poll(handler)
    }

    /// Stops listening and closes every connection's socket, without
    /// callbacks. Queue files stay mapped; `start` serves them again.
    pub fn stop(&mut self) {
        self.ctl.stop();
        for g in &mut self.tcp {
            g.close_all();
        }
        for g in &mut self.shm {
            g.close_all();
        }
        self.ctl.forget_closed();
    }

    /// The control part and every group, to poll from threads of the user's
    /// choice. Each is `Send`; dropping them all stops the server.
    pub fn into_parts(self) -> (ServerCtl<C>, Vec<TcpGroup<C>>, Vec<ShmGroup<C>>) {
        (self.ctl, self.tcp, self.shm)
    }

    /// The control part, for the simulation's logins.
    #[cfg(test)]
    pub(crate) fn ctl_mut(&mut self) -> &mut ServerCtl<C> {
        &mut self.ctl
    }

    /// The TCP group `grp`, e.g. to send to its connections outside callbacks.
    pub fn tcp_group(&mut self, grp: usize) -> &mut TcpGroup<C> {
        &mut self.tcp[grp]
    }

    /// The shm group `grp`.
    pub fn shm_group(&mut self, grp: usize) -> &mut ShmGroup<C> {
        &mut self.shm[grp]
    }
}

// Each part may move to a thread of its own, whatever the configuration.
#[allow(dead_code)]
const _: () = {
    fn assert_send<T: Send>() {}
    fn parts_are_send<C: ServerConf>() {
        assert_send::<ServerCtl<C>>();
        assert_send::<TcpGroup<C>>();
        assert_send::<ShmGroup<C>>();
        assert_send::<TcpShmServer<C>>();
    }
};
