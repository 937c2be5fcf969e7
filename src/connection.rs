//! [`Connection`]: one named peer's queues, over TCP or shared memory, with
//! zero-copy sending ([`Connection::alloc`] → [`Slot`] → push) and in-place
//! receiving (the poll calls hand each message to the user's handler, which
//! pops it).
//!
//! A connection outlives its sockets: while disconnected the user can keep
//! allocating and pushing; the messages wait in the persistent queue (TCP) or
//! the shared-memory queue and reach the peer after its next login.
//!
//! The receive side (the socket's receive buffer, or the shared-memory queue
//! from the peer) is kept beside the connection rather than in it, so that a
//! handler can read a message in place while it sends through the connection.
//! `pop` therefore takes effect in two steps: the ack is counted (and
//! persisted) at once, so a reply pushed next carries it, as in the C++
//! original; the message's bytes are released when the handler returns.

use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use zerocopy::{Immutable, IntoBytes};

use crate::conf::Conf;
use crate::error::{CloseReason, Error};
use crate::msg::{Msg, MAX_BODY_SIZE};
use crate::ptcp::link::{Closed, Link, RecvBuf};
use crate::ptcp::queue::PtcpQueue;
use crate::ptcp::{ptcp_path, Durability};
use crate::shm::{shm_path, ShmReceiver, ShmRegion, ShmSender};

/// Where a connection's outgoing messages go.
pub(crate) enum Tx<C: Conf> {
    /// No peer known yet (a client before its first login).
    Unopened,
    /// The persistent queue, and the socket while logged in.
    Tcp { queue: PtcpQueue<C>, link: Option<Link<C>> },
    /// The shared-memory queue to the peer.
    Shm(ShmSender),
}

/// Whether the message being delivered to a handler was popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Idle,
    Delivered,
    Popped,
}

/// A connection to one named peer. Obtained from the client
/// ([`TcpShmClient::connection`](crate::TcpShmClient::connection)) or passed
/// to the server's handler; never created by the user.
pub struct Connection<C: Conf> {
    local_name: String,
    remote_name: String,
    ptcp_dir: PathBuf,
    durability: Durability,
    /// The user's data, kept with the connection across reconnects.
    pub user_data: C::ConnectionUserData,
    pub(crate) tx: Tx<C>,
    /// Shm mode: why the socket closed (TCP mode asks the link).
    closed: Option<Closed>,
    /// Shm mode: the user asked to close; the socket's owner carries it out.
    pub(crate) close_requested: bool,
    front: Front,
}

impl<C: Conf> Connection<C> {
    pub(crate) fn new(local_name: &str, ptcp_dir: &Path, durability: Durability) -> Self {
        Connection {
            local_name: local_name.to_owned(),
            remote_name: String::new(),
            ptcp_dir: ptcp_dir.to_owned(),
            durability,
            user_data: Default::default(),
            tx: Tx::Unopened,
            closed: Some((CloseReason::RequestClose, 0)),
            close_requested: false,
            front: Front::Idle,
        }
    }

    /// This side's name.
    pub fn local_name(&self) -> &str {
        &self.local_name
    }

    /// The peer's name (empty before the first login).
    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }

    /// The directory of the persistent queue files.
    pub fn ptcp_dir(&self) -> &Path {
        &self.ptcp_dir
    }

    /// Path of this connection's persistent TCP queue file.
    pub fn ptcp_file(&self) -> PathBuf {
        ptcp_path(&self.ptcp_dir, &self.local_name, &self.remote_name)
    }

    /// Whether the connection runs over shared memory.
    pub fn is_shm(&self) -> bool {
        matches!(self.tx, Tx::Shm(_))
    }

    /// Allocates a message with a body of `body_size` bytes in the send queue,
    /// 8-byte aligned. `None` when the queue is full, the size exceeds
    /// [`MAX_BODY_SIZE`], or no peer is known yet. Fill the [`Slot`], then
    /// push it; dropping it unpushed sends nothing.
    #[inline]
    pub fn alloc(&mut self, body_size: usize) -> Option<Slot<'_, C>> {
        if body_size > MAX_BODY_SIZE {
            return None;
        }
        let body = match &mut self.tx {
            Tx::Tcp { queue, .. } => queue.alloc(body_size).then(|| queue.pending_body()),
            Tx::Shm(tx) => tx.alloc(body_size).then(|| tx.pending_body()),
            Tx::Unopened => None,
        }?;
        Some(Slot { body: NonNull::from(body), conn: self })
    }

    /// Sends the bytes of `value` (a `#[repr(C)]` struct deriving zerocopy's
    /// `IntoBytes` and `Immutable`, or a byte slice) as one message. False if
    /// the queue is full.
    ///
    /// # Panics
    /// If `msg_type` is 0, the heartbeat type.
    pub fn send<T: IntoBytes + Immutable + ?Sized>(&mut self, msg_type: u16, value: &T) -> bool {
        self.send_with(msg_type, value, false)
    }

    /// As [`send`](Self::send), but over TCP the message waits for the next
    /// push (see [`Slot::push_more`]).
    pub fn send_more<T: IntoBytes + Immutable + ?Sized>(&mut self, msg_type: u16, value: &T) -> bool {
        self.send_with(msg_type, value, true)
    }

    fn send_with<T: IntoBytes + Immutable + ?Sized>(&mut self, msg_type: u16, value: &T, more: bool) -> bool {
        let bytes = value.as_bytes();
        let Some(mut slot) = self.alloc(bytes.len()) else { return false };
        slot.copy_from_slice(bytes);
        if more {
            slot.push_more(msg_type);
        } else {
            slot.push(msg_type);
        }
        true
    }

    /// Consumes the message being handled. The pop is made durable (over TCP
    /// the ack, in shared memory the read index) when the handler returns,
    /// or earlier in the same store as a reply the handler pushes on this
    /// connection: a crash can neither lose such a reply nor leave its
    /// message to be delivered again. The message's bytes stay readable
    /// until the handler returns. A message not popped is delivered again by
    /// the next poll, and after a restart. Outside a handler, or twice, it
    /// does nothing.
    #[inline]
    pub fn pop(&mut self) {
        if self.front != Front::Delivered {
            return;
        }
        self.front = Front::Popped;
        if let Tx::Tcp { queue, .. } = &mut self.tx {
            queue.inc_ack();
        }
    }

    /// Closes the connection; the peer sees a disconnect, and the
    /// disconnected callback reports [`CloseReason::RequestClose`].
    pub fn close(&mut self) {
        match &mut self.tx {
            Tx::Tcp { link: Some(link), .. } => link.close(CloseReason::RequestClose, 0),
            _ => {
                if self.closed.is_none() {
                    self.closed = Some((CloseReason::RequestClose, 0));
                    self.close_requested = true;
                }
            }
        }
    }

    /// Whether the connection is down (closed, or never logged in).
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    /// Why the connection is down, with the errno if a system call failed
    /// (0 otherwise); `None` while connected.
    pub fn close_reason(&self) -> Option<(CloseReason, i32)> {
        match &self.tx {
            Tx::Tcp { link: Some(link), .. } => link.closed(),
            _ => self.closed,
        }
    }

    /// Flushes the persistent queue file to disk (for
    /// [`Durability::OnDemand`]); a no-op in shared-memory mode.
    pub fn flush(&self) -> io::Result<()> {
        match &self.tx {
            Tx::Tcp { queue, .. } => queue.flush(),
            _ => Ok(()),
        }
    }

    /// Under [`Durability::EveryPush`], the first flush to disk that failed
    /// since the last call (`None` if all succeeded, and in other modes).
    /// The pushes and pops since then are in the page cache, so they survive
    /// a crash of the process, but not necessarily a power loss; a push
    /// cannot fail for it, so this is where the failure is reported.
    pub fn take_flush_error(&mut self) -> Option<io::Error> {
        match &mut self.tx {
            Tx::Tcp { queue, .. } => queue.take_flush_error(),
            _ => None,
        }
    }

    /// The persistent queue's `(ack, seq_start, seq_end)` in TCP mode.
    pub fn seqs(&self) -> Option<(u32, u32, u32)> {
        match &self.tx {
            Tx::Tcp { queue, .. } => Some(queue.seqs()),
            _ => None,
        }
    }

    /// A value that changes with every push and persists with the queue
    /// (TCP: the next message's sequence number; shm: the producer's index).
    /// An application that records it before a push can tell after a crash
    /// whether that push happened: the mark moved if and only if it did.
    pub fn push_mark(&self) -> u64 {
        match &self.tx {
            Tx::Tcp { queue, .. } => queue.seqs().2 as u64,
            Tx::Shm(tx) => tx.published() as u64,
            Tx::Unopened => 0,
        }
    }

    pub(crate) fn set_remote_name(&mut self, name: &str) {
        if self.remote_name != name {
            self.tx = Tx::Unopened;
            self.remote_name = name.to_owned();
        }
    }

    /// Opens the queue files for `use_shm` (keeping them if already open in
    /// that mode). Shm mode returns the receiving end of the peer's queue.
    pub(crate) fn open(&mut self, use_shm: bool) -> Result<Option<ShmReceiver>, Error> {
        if use_shm {
            return self.open_shm(false).map(Some);
        }
        if !matches!(self.tx, Tx::Tcp { .. }) {
            let queue = PtcpQueue::open(&self.ptcp_file(), self.durability)?;
            self.tx = Tx::Tcp { queue, link: None };
        }
        Ok(None)
    }

    /// Opens the shared-memory queues emptied (the server, at a new day's
    /// login, while the client waits for the answer, so no end is in use).
    /// Returns the receiving end.
    pub(crate) fn open_shm_emptied(&mut self) -> Result<ShmReceiver, Error> {
        self.open_shm(true)
    }

    /// Opens the shared-memory queues, keeping a producer end already open
    /// unless `emptied`. Emptied objects are zeroed before they are read, so
    /// a reset a crash cut short, whose indices no queue can have, is
    /// finished by the next one instead of refusing every login.
    fn open_shm(&mut self, emptied: bool) -> Result<ShmReceiver, Error> {
        let send = shm_path(&self.local_name, &self.remote_name);
        let recv = shm_path(&self.remote_name, &self.local_name);
        let corrupt = |path: &Path| Error::FileCorrupt {
            path: path.to_owned(),
            detail: "shm queue indices are impossible".into(),
        };
        if emptied {
            self.tx = Tx::Unopened; // lets go of the producer end's lock
        }
        let mut recv_region = ShmRegion::open(&recv, C::SHM_QUEUE_SIZE)?;
        if !matches!(self.tx, Tx::Shm(_)) {
            let mut send_region = ShmRegion::open_producer(&send, C::SHM_QUEUE_SIZE)?;
            if emptied {
                send_region.zero();
            }
            self.tx = Tx::Shm(ShmSender::new(send_region).map_err(|_| corrupt(&send))?);
        }
        if emptied {
            recv_region.zero();
        }
        let mut rx = ShmReceiver::new(recv_region).map_err(|_| corrupt(&recv))?;
        if let Tx::Shm(tx) = &self.tx {
            // A crash may have fallen between replies and their pop.
            rx.catch_up(tx.consumed());
        }
        Ok(rx)
    }

    /// Empties the persistent queue (the peer's name changed).
    pub(crate) fn reset_tcp(&mut self) {
        if let Tx::Tcp { queue, .. } = &mut self.tx {
            queue.reset();
        }
    }

    /// Marks the connection up (shm mode) after a login.
    pub(crate) fn set_open(&mut self) {
        self.closed = None;
        self.close_requested = false;
    }

    /// Marks the connection down (shm mode) with the socket's reason.
    pub(crate) fn set_closed(&mut self, closed: Closed) {
        if self.closed.is_none() {
            self.closed = Some(closed);
        }
    }

    /// TCP mode: installs the logged-in socket, applies the peer's login ack
    /// and starts resending from it.
    pub(crate) fn start_link(&mut self, mut link: Link<C>, remote_ack: u32) {
        if let Tx::Tcp { queue, link: slot } = &mut self.tx {
            if queue.login_ack(remote_ack).is_err() {
                link.close(CloseReason::PtcpFileCorrupt, 0);
            }
            link.send_pending(Some(queue));
            *slot = Some(link);
        }
        self.set_open();
    }

    /// TCP mode: takes the socket away after it closed, keeping its reason.
    pub(crate) fn take_link(&mut self) -> Option<Closed> {
        if let Tx::Tcp { link, .. } = &mut self.tx {
            let closed = link.as_ref()?.closed()?;
            *link = None;
            self.closed = Some(closed);
            return Some(closed);
        }
        None
    }

    /// TCP mode: heartbeats, receiving, and delivering each complete message
    /// to `on_msg` while the handler pops them.
    pub(crate) fn poll_tcp(
        &mut self,
        rb: &mut RecvBuf<C>,
        now: i64,
        mut on_msg: impl FnMut(&mut Connection<C>, Msg<'_>),
    ) {
        if self.front != Front::Idle {
            self.after_unwind(Some(rb));
        }
        if let Tx::Tcp { queue, link: Some(link) } = &mut self.tx {
            link.heartbeat(now, Some(queue));
        }
        loop {
            let Tx::Tcp { queue, link: Some(link) } = &mut self.tx else { return };
            let Some(msg) = link.front(rb, Some(queue)) else { break };
            if !self.deliver(msg, &mut on_msg) {
                // Left for the next poll, typically because its reply found
                // our queue full: the acks that free it are still read.
                if let Tx::Tcp { queue, link: Some(link) } = &mut self.tx {
                    link.receive_behind(rb, Some(queue));
                }
                break;
            }
            let frame_size = rb.pop();
            if let Tx::Tcp { link: Some(link), .. } = &mut self.tx {
                link.consumed(frame_size);
            }
            if !rb.has_message() {
                break;
            }
        }
        if let Tx::Tcp { queue, link: Some(link) } = &mut self.tx {
            link.ack_if_due(queue);
        }
    }

    /// Shm mode: delivers the peer's messages to `on_msg` while the handler
    /// pops them. A corrupt queue closes the connection.
    #[inline]
    pub(crate) fn poll_shm(&mut self, rx: &mut ShmReceiver, mut on_msg: impl FnMut(&mut Connection<C>, Msg<'_>)) {
        if self.front != Front::Idle {
            self.after_unwind(None);
        }
        loop {
            let popped = match rx.front() {
                Ok(Some(msg)) => {
                    // Replies pushed by the handler wait until it returns,
                    // while the message stays readable, and are published
                    // in the same store as the pop (see `ProducerWord`).
                    if let Tx::Shm(tx) = &mut self.tx {
                        tx.hold(true);
                    }
                    self.deliver(msg, &mut on_msg)
                }
                Ok(None) => return,
                Err(_) => {
                    self.set_closed((CloseReason::ShmQueueCorrupt, 0));
                    self.close_requested = true;
                    return;
                }
            };
            if let Tx::Shm(tx) = &mut self.tx {
                tx.hold(false);
                if popped && tx.has_unpublished() {
                    tx.publish_consumed(rx.after_front());
                } else {
                    tx.publish();
                }
            }
            if popped {
                rx.pop();
            }
            if !popped || self.is_closed() {
                return;
            }
        }
    }

    /// A handler unwound out of [`deliver`](Self::deliver) (a panic the user
    /// caught) and the connection is polled again: the state in memory is
    /// made what the files hold, as after a crash at that point. A pop not
    /// yet durable is forgotten and its message delivered again; a pop made
    /// durable by a reply pushed after it (TCP) leaves its message consumed;
    /// replies held in shared memory were never published and are dropped.
    /// Without this the message in front would come again with its pop
    /// still counted: an ack one ahead, and a message of the peer's lost.
    #[cold]
    #[inline(never)]
    fn after_unwind(&mut self, rb: Option<&mut RecvBuf<C>>) {
        let popped = self.front == Front::Popped;
        self.front = Front::Idle;
        match &mut self.tx {
            Tx::Tcp { queue, link } => {
                let durable = popped && !queue.drop_uncommitted_pops();
                if let (true, Some(rb)) = (durable, rb) {
                    let frame_size = rb.pop();
                    if let Some(link) = link {
                        link.consumed(frame_size);
                    }
                }
            }
            Tx::Shm(tx) => tx.discard_unpublished(),
            Tx::Unopened => {}
        }
    }

    /// Hands one message to the handler; true if it was popped.
    #[inline]
    fn deliver(&mut self, msg: Msg<'_>, on_msg: &mut impl FnMut(&mut Connection<C>, Msg<'_>)) -> bool {
        self.front = Front::Delivered;
        on_msg(self, msg);
        let popped = self.front == Front::Popped;
        self.front = Front::Idle;
        if let Tx::Tcp { queue, .. } = &mut self.tx {
            queue.commit_ack();
        }
        popped
    }
}

/// A message allocated in the send queue, derefs to its body. Push it to
/// commit; drop it to abandon it.
pub struct Slot<'a, C: Conf> {
    conn: &'a mut Connection<C>,
    /// The allocated body in the queue's mapping, found once by `alloc`.
    body: NonNull<[u8]>,
}

impl<C: Conf> Slot<'_, C> {
    /// [`Connection::pop`] of the message being handled, while this slot is
    /// open: the reply pattern is alloc (so a full queue leaves the message
    /// to be delivered again), fill, `pop_received`, push.
    #[inline]
    pub fn pop_received(&mut self) {
        self.conn.pop();
    }

    /// Commits the message and, over TCP, sends everything queued.
    ///
    /// # Panics
    /// If `msg_type` is 0, the heartbeat type (the peer would skip it).
    #[inline]
    pub fn push(self, msg_type: u16) {
        assert_ne!(msg_type, 0, "msg_type 0 is reserved for heartbeats");
        match &mut self.conn.tx {
            Tx::Tcp { queue, link } => {
                queue.push(msg_type);
                if let Some(link) = link {
                    link.ack_carried();
                    link.send_pending(Some(queue));
                }
            }
            Tx::Shm(tx) => tx.push(msg_type),
            Tx::Unopened => {}
        }
    }

    /// Commits the message without sending it yet: over TCP it goes out with
    /// the next push, at the next login, or when a heartbeat is due, so a
    /// batch leaves in one write. In shared memory it is the same as push.
    ///
    /// # Panics
    /// If `msg_type` is 0.
    #[inline]
    pub fn push_more(self, msg_type: u16) {
        assert_ne!(msg_type, 0, "msg_type 0 is reserved for heartbeats");
        match &mut self.conn.tx {
            Tx::Tcp { queue, link } => {
                queue.push(msg_type);
                if let Some(link) = link {
                    link.ack_carried();
                }
            }
            Tx::Shm(tx) => tx.push(msg_type),
            Tx::Unopened => {}
        }
    }
}

// SAFETY: a slot is a `&mut Connection` and a `&mut [u8]` into memory the
// connection owns, and may cross threads as they may.
unsafe impl<C: Conf> Send for Slot<'_, C> where Connection<C>: Send {}
// SAFETY: as for Send; `&Slot` reads the body only.
unsafe impl<C: Conf> Sync for Slot<'_, C> where Connection<C>: Sync {}

// The body lies in the queue's mapping, which the connection owns and the
// slot borrows mutably for its whole life: the allocation stays reserved and
// no other reference in this process reaches those bytes until push or drop
// (the peer reads them only after a push publishes them). The connection's
// own stores meanwhile (an ack in the queue file's header) touch other bytes.

impl<C: Conf> Deref for Slot<'_, C> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: see above; `&self` excludes a mutable slice meanwhile.
        unsafe { self.body.as_ref() }
    }
}

impl<C: Conf> DerefMut for Slot<'_, C> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: see above; `&mut self` makes this the only slice.
        unsafe { self.body.as_mut() }
    }
}
