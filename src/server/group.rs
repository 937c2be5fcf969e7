//! The group parts of a server: each polls the live connections of one TCP
//! or shared-memory group, and hands a connection back to the control part
//! when it closes.

use std::sync::Arc;

use super::{GroupShared, Rx, ServerHandler, SlotConn};
use crate::conf::ServerConf;
use crate::connection::Connection;

/// The live-slot bookkeeping both group kinds share.
struct GroupCore<C: ServerConf> {
    shared: Arc<GroupShared<C>>,
    /// Slots this group owns (preallocated: no allocation while polling).
    live: Vec<usize>,
    seen: u32,
}

impl<C: ServerConf> GroupCore<C> {
    fn new(shared: Arc<GroupShared<C>>) -> Self {
        let n = shared.slots.len();
        GroupCore { shared, live: Vec::with_capacity(n), seen: 0 }
    }

    /// Adopts the slots the control part handed over since the last poll.
    #[inline]
    fn adopt(&mut self) {
        if self.shared.to_group.changed(&mut self.seen) {
            self.rescan();
        }
    }

    /// Adds every slot the group side owns to `live` (rare: after a login).
    #[cold]
    #[inline(never)]
    fn rescan(&mut self) {
        for (i, cell) in self.shared.slots.iter().enumerate() {
            // SAFETY: this group part is the only group side of these slots,
            // and `&mut self` keeps it on one thread.
            if unsafe { cell.group_with(|_, _| ()) }.is_some() && !self.live.contains(&i) {
                self.live.push(i);
            }
        }
    }

    /// Runs `f` on each live slot; when `f` returns true the connection
    /// closed and the slot goes back to the control part.
    #[inline]
    fn each_live(&mut self, mut f: impl FnMut(&mut SlotConn<C>, bool) -> bool) {
        self.adopt();
        let mut k = 0;
        while k < self.live.len() {
            let cell = &self.shared.slots[self.live[k]];
            // SAFETY: as in `adopt`.
            let closed =
                unsafe { cell.group_with(|slot, close_request| slot.as_mut().is_none_or(|s| f(s, close_request))) };
            if closed == Some(false) {
                k += 1;
                continue;
            }
            if closed == Some(true) {
                // SAFETY: as in `adopt`; the group owns the slot until this store.
                unsafe { cell.hand_to_ctl() };
                self.shared.to_ctl.raise();
            }
            self.live.swap_remove(k);
        }
    }

    /// Runs `f` on each live connection without polling it.
    fn connections(&mut self, mut f: impl FnMut(&mut Connection<C>)) {
        self.each_live(|slot, _| {
            f(&mut slot.conn);
            false
        });
    }
}

/// The part that polls one TCP group's connections. `Send`.
pub struct TcpGroup<C: ServerConf> {
    core: GroupCore<C>,
}

impl<C: ServerConf> TcpGroup<C> {
    pub(crate) fn new(shared: Arc<GroupShared<C>>) -> Self {
        TcpGroup { core: GroupCore::new(shared) }
    }

    /// Heartbeats, timeouts, and each connection's complete messages to
    /// `handler.on_client_msg`.
    #[inline]
    pub fn poll(&mut self, now: i64, handler: &mut impl ServerHandler<C>) {
        self.core.each_live(|slot, close_request| {
            if close_request {
                slot.conn.close();
            }
            if let Some(Rx::Tcp(rb)) = &mut slot.rx {
                slot.conn.poll_tcp(rb, now, |c, m| handler.on_client_msg(c, m));
            }
            if slot.conn.is_closed() {
                slot.conn.take_link();
                slot.rx = None;
                return true;
            }
            false
        });
    }

    /// Calls `f` with each live connection (to send outside callbacks).
    pub fn for_each_connection(&mut self, f: impl FnMut(&mut Connection<C>)) {
        self.core.connections(f);
    }

    /// Closes every live connection and hands it back.
    pub(crate) fn close_all(&mut self) {
        self.core.each_live(|slot, _| {
            slot.conn.close();
            slot.conn.take_link();
            slot.rx = None;
            true
        });
    }
}

/// The part that polls one shared-memory group's connections. `Send`.
pub struct ShmGroup<C: ServerConf> {
    core: GroupCore<C>,
}

impl<C: ServerConf> ShmGroup<C> {
    pub(crate) fn new(shared: Arc<GroupShared<C>>) -> Self {
        ShmGroup { core: GroupCore::new(shared) }
    }

    /// Delivers each connection's messages to `handler.on_client_msg`. No
    /// system calls.
    #[inline]
    pub fn poll(&mut self, handler: &mut impl ServerHandler<C>) {
        self.core.each_live(|slot, close_request| {
            if close_request {
                // The control part saw the socket close; it reports why.
                return true;
            }
            if let Some(Rx::Shm(rx)) = &mut slot.rx {
                slot.conn.poll_shm(rx, |c, m| handler.on_client_msg(c, m));
            }
            slot.conn.close_requested
        });
    }

    /// Calls `f` with each live connection (to send outside callbacks).
    pub fn for_each_connection(&mut self, f: impl FnMut(&mut Connection<C>)) {
        self.core.connections(f);
    }

    /// Hands every live connection back.
    pub(crate) fn close_all(&mut self) {
        self.core.each_live(|_, _| true);
    }
}
