//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`),
//! and the tests that replay their seeds and regression inputs.
//!
//! Each function takes arbitrary bytes and drives the crate's own code with
//! them the way a peer, a file or a shared-memory producer could: nothing
//! they contain may panic or reach outside a buffer. The functions also
//! assert what the code promises (a delivered body matches its header, acks
//! keep the sequence numbers consistent, a queue reopens as it was left), so
//! libFuzzer reports a broken promise like a crash.
//!
//! Scratch files are `tcpshm-fuzz-<pid>-*` in `/dev/shm` (else the system
//! temporary directory), written by each run and removed at its end; the
//! tests use their own temporary directories instead.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::OnceLock;

use zerocopy::{FromBytes, IntoBytes};

use crate::conf::{Checked, Conf, DefaultConf};
use crate::error::CloseReason;
use crate::msg::{valid_name, LoginLayout, LoginMsg, LoginRspMsg, MsgHeader, HEADER_SIZE, MSG_TYPE_HEARTBEAT};
use crate::ptcp::link::RecvBuf;
use crate::ptcp::queue::PtcpQueue;
use crate::ptcp::{ack_in_range, seq_not_before, Durability, PTCP_MAGIC, PTCP_VERSION};
use crate::shm::{ShmReceiver, ShmRegion};

/// Small buffers and queue, so growth, compaction and a full queue are
/// reached with short inputs; a maximum that is a power of two.
#[derive(Debug)]
struct FrameLe;
impl Conf for FrameLe {
    const TCP_QUEUE_SIZE: usize = 256;
    const TCP_RECV_BUF_INIT_SIZE: usize = 64;
    const TCP_RECV_BUF_MAX_SIZE: usize = 256;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

/// Big-endian wire order, a tiny initial buffer and a maximum that is not a
/// power of two (growth clamps to it).
#[derive(Debug)]
struct FrameBe;
impl Conf for FrameBe {
    const TO_LITTLE_ENDIAN: bool = false;
    const NAME_SIZE: usize = 8;
    const TCP_QUEUE_SIZE: usize = 192;
    const TCP_RECV_BUF_INIT_SIZE: usize = 24;
    const TCP_RECV_BUF_MAX_SIZE: usize = 200;
    type LoginUserData = u64;
    type LoginRspUserData = [u8; 3];
    type ConnectionUserData = ();
}

/// Bytes of the valid header prefix the `ptcp_file` target writes in front
/// of its input: magic, version, queue size, name size, byte order.
const PTCP_PREFIX: usize = 21;
/// Offset of the `write` index word in a ptcp file header.
const PTCP_WRITE_OFF: usize = 24;

/// Where a run's scratch files go: `<dir>/<prefix><name>`.
struct Scratch {
    dir: PathBuf,
    prefix: String,
}

impl Scratch {
    /// This process's scratch place: `tcpshm-fuzz-<pid>-*` files in tmpfs
    /// when there is one (no journal: several times the executions per
    /// second of a disk), else in the system temporary directory.
    fn process() -> &'static Scratch {
        static SCRATCH: OnceLock<Scratch> = OnceLock::new();
        SCRATCH.get_or_init(|| {
            let shm = Path::new(crate::shm::SHM_DIR);
            let dir = if shm.is_dir() { shm.to_owned() } else { std::env::temp_dir() };
            Scratch { dir, prefix: format!("tcpshm-fuzz-{}-", std::process::id()) }
        })
    }

    fn file(&self, name: &str) -> ScratchFile {
        ScratchFile(self.dir.join(format!("{}{name}", self.prefix)))
    }
}

/// A scratch file's path; the file is removed when the run is over.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for ScratchFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// Reads an input front to back; past its end every read gives zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let n = N.min(self.0.len());
        a[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        a
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

// ---------------------------------------------------------------- tcp_frames

/// Receive side of a TCP link over arbitrary peer bytes: the framing of
/// `RecvBuf` (header checks, growth and compaction, heartbeats skipped,
/// front and pop) and the application of every header's ack to a
/// `PtcpQueue` that holds a few pushed messages.
///
/// Input: `flags` (bit 0 shm mode: no queue, everything skipped; bit 1 the
/// big-endian configuration; bits 2-4 messages queued before; bits 5-7 how
/// many sends happen before), a body-size seed, 4 bytes of read sizes
/// (cycled), 4 bytes of user actions per delivered message (cycled: bit 0
/// leave it unpopped for 1 + `action >> 5` polls while receiving behind it,
/// bit 1 reply, bit 2 send), then the byte stream from the peer.
pub fn tcp_frames(data: &[u8]) {
    tcp_frames_in(Scratch::process(), data);
}

fn tcp_frames_in(scratch: &Scratch, data: &[u8]) {
    if data.first().is_some_and(|f| f & 2 != 0) {
        frames_with::<FrameBe>(scratch, data);
    } else {
        frames_with::<FrameLe>(scratch, data);
    }
}

/// Pushes a message of `len` bytes whose body repeats `fill`; false if full.
fn push_msg<C: Conf>(q: &mut PtcpQueue<C>, msg_type: u16, len: usize, fill: u8) -> bool {
    if !q.alloc(len) {
        return false;
    }
    let body = q.pending_body();
    assert_eq!(body.len(), len, "allocated body has the asked length");
    body.fill(fill);
    q.push(msg_type);
    true
}

/// The frames of a whole stream as the framing rules define them, without
/// acks: the application messages of the complete frames (none in shm
/// mode) and the close reason of the first bad header, if any.
fn reference_frames<C: Conf>(stream: &[u8], shm_mode: bool) -> (Vec<(u16, Vec<u8>)>, Option<CloseReason>) {
    let mut msgs = vec![];
    let mut at = 0;
    while stream.len() - at >= HEADER_SIZE {
        let (h, _) = MsgHeader::read_from_prefix(&stream[at..]).unwrap_or_default();
        let h = h.swap_wire::<C>();
        if (h.size as usize) < HEADER_SIZE {
            return (msgs, Some(CloseReason::InvalidMsgSize));
        }
        if h.padded_size() > C::TCP_RECV_BUF_MAX_SIZE {
            return (msgs, Some(CloseReason::MsgTooLarge));
        }
        if stream.len() - at < h.padded_size() {
            break;
        }
        if !shm_mode && h.msg_type != MSG_TYPE_HEARTBEAT {
            msgs.push((h.msg_type, stream[at + HEADER_SIZE..at + h.size as usize].to_vec()));
        }
        at += h.padded_size();
    }
    (msgs, None)
}

/// Everything a queue would resend after a login: its messages in order.
fn resend_bytes<C: Conf>(q: &mut PtcpQueue<C>) -> Vec<u8> {
    let start = q.seqs().1;
    assert_eq!(q.login_ack(start), Ok(()), "acking seq_start is always accepted");
    let mut out = vec![];
    loop {
        let chunk = q.sendable();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(chunk);
        let n = chunk.len();
        q.sent(n);
    }
    assert!(q.all_sent());
    out
}

/// Checks that `bytes` are exactly `count` well-formed frames.
fn assert_frames<C: Conf>(mut bytes: &[u8], count: u32) {
    let mut n = 0u32;
    while !bytes.is_empty() {
        let (h, _) = MsgHeader::read_from_prefix(bytes).expect("a whole header");
        let h = h.swap_wire::<C>();
        assert!(h.size as usize >= HEADER_SIZE, "queued message with size {}", h.size);
        assert!(h.padded_size() <= bytes.len(), "queued message runs past the queue");
        bytes = &bytes[h.padded_size()..];
        n += 1;
    }
    assert_eq!(n, count, "queued frames and seq_end - seq_start");
}

/// Closes the queue (its ack committed) and reopens it: it must load, with
/// the same sequence numbers and the same messages to resend.
fn reopen_same<C: Conf>(mut q: PtcpQueue<C>, path: &Path) -> PtcpQueue<C> {
    q.commit_ack();
    let seqs = q.seqs();
    let queued = resend_bytes(&mut q);
    assert_frames::<C>(&queued, seqs.2.wrapping_sub(seqs.1));
    drop(q);
    let mut q = match PtcpQueue::<C>::open(path, Durability::Never) {
        Ok(q) => q,
        Err(e) => panic!("a queue this library left does not reopen: {e}"),
    };
    assert_eq!(q.seqs(), seqs, "reopened sequence numbers");
    assert_eq!(resend_bytes(&mut q), queued, "reopened messages");
    q
}

/// The peer's byte stream, handed out in reads of the sizes the input chose.
struct Feed<'a> {
    stream: &'a [u8],
    fed: usize,
    /// Read sizes, cycled (each 1 to 48 bytes).
    sizes: [u8; 4],
    reads: usize,
}

impl<'a> Feed<'a> {
    fn is_done(&self) -> bool {
        self.fed == self.stream.len()
    }

    /// What the next read offers (taken or not, it counts as a read).
    fn next(&mut self) -> &'a [u8] {
        let want = self.sizes[self.reads % 4] as usize % 48 + 1;
        self.reads += 1;
        &self.stream[self.fed..self.stream.len().min(self.fed + want)]
    }
}

/// One receive as `Link::receive` does it: a read into the spare room (none
/// if the buffer is full), then framing, checking what the acks did to the
/// queue. The bytes taken, or why the connection closes.
fn receive_once<C: Conf>(
    rb: &mut RecvBuf<C>,
    q: &mut PtcpQueue<C>,
    shm_mode: bool,
    feed: &mut Feed<'_>,
) -> Result<usize, CloseReason> {
    let n = rb.fill(feed.next());
    feed.fed += n;
    if n == 0 {
        return Ok(0);
    }
    let before = q.seqs();
    // Several headers may be framed at once, so an error can follow acks
    // that took effect; either way the numbers only move forward.
    let res = rb.frame(if shm_mode { None } else { Some(q) });
    let after = q.seqs();
    assert_eq!(after.0, before.0, "framing leaves our ack alone");
    assert_eq!(after.2, before.2, "framing pushes nothing");
    assert!(ack_in_range(after.1, before.1, before.2), "seq_start moves forward within the queue");
    res.map(|()| n)
}

fn frames_with<C: Conf>(scratch: &Scratch, data: &[u8]) {
    #[allow(clippy::let_unit_value)]
    let () = Checked::<C>::CONF;
    let mut input = Input(data);
    let flags = input.byte();
    let shm_mode = flags & 1 != 0;
    let body_seed = input.byte() as usize;
    let reads: [u8; 4] = input.array();
    let actions: [u8; 4] = input.array();
    let stream = input.rest();

    let path = scratch.file(if C::TO_LITTLE_ENDIAN { "frames_le.ptcp" } else { "frames_be.ptcp" });
    let mut q = PtcpQueue::<C>::open(&path, Durability::Never).expect("scratch queue file");
    q.reset();
    for i in 0..(flags >> 2) & 7 {
        push_msg(&mut q, 1 + i as u16, (body_seed + 13 * i as usize) % 48, i);
    }
    for i in 0..flags >> 5 {
        let n = q.sendable().len().min(5 + 11 * i as usize);
        q.sent(n);
    }

    let mut rb = RecvBuf::<C>::new();
    let mut delivered: Vec<(u16, Vec<u8>)> = vec![];
    let mut closed = None;
    let mut feed = Feed { stream, fed: 0, sizes: reads, reads: 0 };
    let mut action_no = 0;
    'polls: loop {
        // As `Link::front`: deliver what is framed, else receive once more.
        if rb.skip_to_message(shm_mode) {
            let msg = rb.front();
            assert!(!shm_mode, "shm mode delivers nothing from the socket");
            assert_ne!(msg.msg_type(), MSG_TYPE_HEARTBEAT, "heartbeats are skipped");
            assert_eq!(msg.size() as usize, msg.body().len() + HEADER_SIZE);
            assert_eq!(msg.body().as_ptr() as usize % 8, 0, "bodies start 8-byte aligned");
            delivered.push((msg.msg_type(), msg.body().to_vec()));
            let action = actions[action_no % 4];
            action_no += 1;
            if action & 1 != 0 {
                // Not popped (its reply found our queue full, say): the
                // connection still receives behind it, a few polls long,
                // and every poll hands the same message again.
                for _ in 0..1 + (action >> 5) {
                    if !feed.is_done() {
                        if let Err(reason) = receive_once(&mut rb, &mut q, shm_mode, &mut feed) {
                            closed = Some(reason);
                            break 'polls;
                        }
                    }
                    assert!(rb.skip_to_message(shm_mode));
                    let again = rb.front();
                    let (msg_type, body) = &delivered[delivered.len() - 1];
                    assert_eq!((again.msg_type(), again.body()), (*msg_type, &body[..]), "the held message");
                }
            }
            rb.pop();
            q.inc_ack();
            let before = q.seqs();
            if action & 2 != 0 && push_msg(&mut q, 7, (action >> 3) as usize * 3, action) {
                let after = q.seqs();
                assert_eq!((after.0, after.1, after.2), (before.0, before.1, before.2.wrapping_add(1)));
            }
            if action & 4 != 0 {
                let n = q.sendable().len().min((action >> 4) as usize * 5 + 1);
                q.sent(n);
            }
            continue;
        }
        if feed.is_done() {
            break;
        }
        match receive_once(&mut rb, &mut q, shm_mode, &mut feed) {
            Ok(n) => assert!(n > 0, "the receive buffer has no room although every message was popped"),
            Err(reason) => {
                closed = Some(reason);
                break;
            }
        }
    }

    let (expected, framing_error) = reference_frames::<C>(stream, shm_mode);
    match closed {
        None => {
            assert_eq!(framing_error, None, "a bad header went unnoticed");
            assert_eq!(delivered, expected, "delivered messages");
        }
        Some(CloseReason::AckOutOfRange) => {
            assert!(!shm_mode, "acks are not applied in shm mode");
            assert!(expected.starts_with(&delivered), "delivered messages");
        }
        Some(reason @ (CloseReason::InvalidMsgSize | CloseReason::MsgTooLarge)) => {
            assert_eq!(Some(reason), framing_error, "close reason");
            assert!(expected.starts_with(&delivered), "delivered messages");
        }
        Some(reason) => panic!("framing closed with {reason:?}: our own queue looked corrupt"),
    }
    if !shm_mode {
        reopen_same(q, &path);
    }
}

// --------------------------------------------------------------------- login

/// Login and login-response decoding for [`DefaultConf`] and a big-endian
/// configuration with wide user data, on the input as given and resized to
/// a frame; whatever decodes must encode and decode to the same value. Also
/// [`valid_name`] on the input as a name, which must survive a login.
pub fn login(data: &[u8]) {
    login_with::<DefaultConf>(data);
    login_with::<FrameBe>(data);
}

fn same_login<C: Conf>(a: &LoginMsg<C>, b: &LoginMsg<C>) -> bool {
    (a.ack_seq, a.client_seq_start, a.client_seq_end, a.use_shm)
        == (b.ack_seq, b.client_seq_start, b.client_seq_end, b.use_shm)
        && a.user_data.as_bytes() == b.user_data.as_bytes()
        && (&a.client_name, &a.last_server_name) == (&b.client_name, &b.last_server_name)
}

fn same_rsp<C: Conf>(a: &LoginRspMsg<C>, b: &LoginRspMsg<C>) -> bool {
    (a.ack_seq, a.server_seq_start, a.server_seq_end, a.status)
        == (b.ack_seq, b.server_seq_start, b.server_seq_end, b.status)
        && a.user_data.as_bytes() == b.user_data.as_bytes()
        && (&a.server_name, &a.error_msg) == (&b.server_name, &b.error_msg)
}

fn resized(data: &[u8], len: usize) -> Vec<u8> {
    let mut v = data[..data.len().min(len)].to_vec();
    v.resize(len, 0);
    v
}

fn login_with<C: Conf>(data: &[u8])
where
    LoginMsg<C>: std::fmt::Debug,
    LoginRspMsg<C>: std::fmt::Debug,
{
    type L<C> = LoginLayout<C>;
    let _ = LoginMsg::<C>::header_plausible(data);
    for frame in [data, &resized(data, L::<C>::LOGIN_FRAME)[..]] {
        if let Ok(m) = LoginMsg::<C>::decode(frame) {
            assert!(LoginMsg::<C>::header_plausible(&frame[..HEADER_SIZE]));
            assert!(valid_name(&m.client_name, C::NAME_SIZE));
            assert!(m.last_server_name.is_empty() || valid_name(&m.last_server_name, C::NAME_SIZE));
            let bytes = m.encode();
            assert_eq!(bytes.len(), L::<C>::LOGIN_FRAME);
            let again = LoginMsg::<C>::decode(&bytes).expect("a decoded login re-encodes decodably");
            assert!(same_login(&m, &again), "login round trip: {m:?} became {again:?}");
            assert_eq!(again.encode(), bytes);
        }
    }
    for frame in [data, &resized(data, L::<C>::RSP_FRAME)[..]] {
        if let Ok(m) = LoginRspMsg::<C>::decode(frame) {
            assert!(valid_name(&m.server_name, C::NAME_SIZE));
            let bytes = m.encode();
            assert_eq!(bytes.len(), L::<C>::RSP_FRAME);
            let again = LoginRspMsg::<C>::decode(&bytes).expect("a decoded response re-encodes decodably");
            assert!(same_rsp(&m, &again), "response round trip: {m:?} became {again:?}");
            assert_eq!(again.encode(), bytes);
        }
    }
    // The input as a name: a valid one must come back unchanged.
    let name = String::from_utf8_lossy(&data[..data.len().min(2 * C::NAME_SIZE)]);
    for name_size in [C::NAME_SIZE, data.len() % 20] {
        let _ = valid_name(&name, name_size);
    }
    if valid_name(&name, C::NAME_SIZE) {
        let m = LoginMsg::<C> {
            ack_seq: 1,
            client_seq_start: 2,
            client_seq_end: 3,
            user_data: Default::default(),
            use_shm: false,
            client_name: name.to_string(),
            last_server_name: name.to_string(),
        };
        let d = LoginMsg::<C>::decode(&m.encode()).expect("a login with valid names decodes");
        assert!(same_login(&m, &d), "valid name {name:?} changed: {d:?}");
        let mut r = LoginRspMsg::<C>::new(&name, crate::LoginStatus::Ok);
        r.error_msg = name.to_string();
        let d = LoginRspMsg::<C>::decode(&r.encode()).expect("a response with a valid name decodes");
        assert!(same_rsp(&r, &d), "valid name {name:?} changed: {d:?}");
    }
}

// ----------------------------------------------------------------- ptcp_file

/// The ptcp file loader over arbitrary bytes, twice: the input as a whole
/// file, and `flags` then the input behind a valid header prefix (bit 0
/// picks the big-endian configuration; bit 1 folds the three positions into
/// range so the loader's message walk is reached more often), the rest of
/// the input after the file driving operations on the loaded queue. A queue
/// that loads must behave: acks within range succeed and never find it
/// corrupt, pushes and sends keep it consistent, and it reopens as left.
pub fn ptcp_file(data: &[u8]) {
    ptcp_file_in(Scratch::process(), data);
}

fn ptcp_file_in(scratch: &Scratch, data: &[u8]) {
    let raw = scratch.file("raw.ptcp");
    std::fs::write(&raw, data).expect("write scratch ptcp file");
    if let Ok(q) = PtcpQueue::<FrameLe>::open(&raw, Durability::Never) {
        exercise_queue(q, &raw, data.get(FILE_HEADER..).unwrap_or_default());
    }
    let mut input = Input(data);
    let flags = input.byte();
    if flags & 1 == 0 {
        ptcp_fixed::<FrameLe>(scratch, flags, input);
    } else {
        ptcp_fixed::<FrameBe>(scratch, flags, input);
    }
}

/// Bytes of a ptcp file's header.
const FILE_HEADER: usize = 64;

fn ptcp_fixed<C: Conf>(scratch: &Scratch, flags: u8, mut input: Input<'_>) {
    let size = FILE_HEADER + C::TCP_QUEUE_SIZE;
    let mut file = vec![0u8; size];
    file[..8].copy_from_slice(&PTCP_MAGIC);
    file[8..12].copy_from_slice(&PTCP_VERSION.to_ne_bytes());
    file[12..16].copy_from_slice(&(C::TCP_QUEUE_SIZE as u32).to_ne_bytes());
    file[16..20].copy_from_slice(&(C::NAME_SIZE as u32).to_ne_bytes());
    file[20] = C::TO_LITTLE_ENDIAN as u8;
    let body = input.take(size - PTCP_PREFIX);
    file[PTCP_PREFIX..PTCP_PREFIX + body.len()].copy_from_slice(body);
    if flags & 2 != 0 {
        // write_pos, wrap_pos, read_pos folded into 0..=blocks.
        let blocks = (C::TCP_QUEUE_SIZE / 8) as u32 + 1;
        for off in [PTCP_WRITE_OFF, PTCP_WRITE_OFF + 4, PTCP_WRITE_OFF + 8] {
            let v = u32::from_ne_bytes(file[off..off + 4].try_into().unwrap_or_default()) % blocks;
            file[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        }
    }
    let path = scratch.file(if C::TO_LITTLE_ENDIAN { "fixed_le.ptcp" } else { "fixed_be.ptcp" });
    std::fs::write(&path, &file).expect("write scratch ptcp file");
    if let Ok(q) = PtcpQueue::<C>::open(&path, Durability::Never) {
        exercise_queue(q, &path, input.rest());
    }
}

/// Operations on a queue that loaded, at most 64, chosen by `ops`.
fn exercise_queue<C: Conf>(q: PtcpQueue<C>, path: &Path, ops: &[u8]) {
    // What loaded must reopen as it is (the walk validated every message).
    let mut q = reopen_same(q, path);
    let mut input = Input(ops);
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        let before = q.seqs();
        match op % 8 {
            0 | 1 => {
                let ack = if op & 8 != 0 { input.u32() } else { before.1.wrapping_add(input.byte() as i8 as u32) };
                let res = if op % 8 == 0 { q.ack(ack) } else { q.login_ack(ack) };
                match res {
                    Ok(()) => {
                        let after = q.seqs();
                        assert_eq!((after.0, after.2), (before.0, before.2));
                        if seq_not_before(ack, before.1) {
                            assert_eq!(after.1, ack, "an ack within range becomes seq_start");
                        } else {
                            assert_eq!(after.1, before.1, "a stale ack is ignored");
                        }
                    }
                    Err(e) => {
                        assert!(!ack_in_range(ack, before.1, before.2), "ack {ack} in {before:?} refused: {e:?}");
                        assert_eq!(q.seqs(), before);
                    }
                }
            }
            2 => {
                let len = input.byte() as usize * 2;
                if push_msg(&mut q, 3, len, op) {
                    assert_eq!(q.seqs().2, before.2.wrapping_add(1));
                } else {
                    assert_eq!(q.seqs(), before);
                }
            }
            3 => {
                let limit = input.byte() as usize;
                let n = q.sendable().len().min(limit);
                q.sent(n);
            }
            4 => {
                q.inc_ack();
                if op & 8 != 0 {
                    q.commit_ack();
                }
                assert_eq!(q.seqs().0, before.0.wrapping_add(1));
            }
            5 => {
                q.reset();
                assert_eq!(q.seqs(), (0, 0, 0));
                assert!(q.sendable().is_empty());
            }
            6 => q = reopen_same(q, path),
            _ => {
                let queued = resend_bytes(&mut q);
                assert_frames::<C>(&queued, before.2.wrapping_sub(before.1));
            }
        }
    }
    reopen_same(q, path);
}

// -------------------------------------------------------------- shm_consumer

/// The consumer end of a shared-memory queue over an object filled from the
/// input, with the producer (another process, maybe hostile) changing its
/// word and the blocks between calls. Every body returned must lie inside
/// the queue's blocks and match the size in its header.
///
/// Input: a byte picking the queue size (1 to 16 blocks), the producer word
/// (8 bytes), read_idx (4), a consumed mark for `catch_up` (4), the blocks,
/// then operations (at most 256).
pub fn shm_consumer(data: &[u8]) {
    shm_consumer_in(Scratch::process(), data);
}

/// Bytes after the blocks of a shm object, and the offsets in them.
const SHM_TRAILER: usize = 256;
const SHM_READ_IDX: usize = 128;

/// Checks a body the consumer returned against the object's bytes.
fn check_body(file: &std::fs::File, base: usize, queue_size: usize, body: &[u8]) {
    let at = body.as_ptr() as usize;
    assert!(at >= base + HEADER_SIZE && at + body.len() <= base + queue_size, "body outside the blocks");
    let header_off = at - base - HEADER_SIZE;
    assert_eq!(header_off % 64, 0, "body not at the start of a block");
    let mut size = [0u8; 2];
    file.read_exact_at(&mut size, header_off as u64).expect("read scratch shm object");
    assert_eq!(u16::from_ne_bytes(size) as usize, body.len() + HEADER_SIZE, "body length and header size");
}

/// The producer word's halves in memory order: (write_idx, consumed mark).
fn producer_word(region: &ShmRegion) -> (u32, u32) {
    let b = region.producer().load(Acquire).to_ne_bytes();
    (u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), u32::from_ne_bytes([b[4], b[5], b[6], b[7]]))
}

/// Publishes a producer word, as the producer process would.
fn set_producer_word(region: &ShmRegion, write_idx: u32, consumed: u32) {
    let mut word = [0u8; 8];
    word[..4].copy_from_slice(&write_idx.to_ne_bytes());
    word[4..].copy_from_slice(&consumed.to_ne_bytes());
    region.producer().store(u64::from_ne_bytes(word), Release);
}

fn shm_consumer_in(scratch: &Scratch, data: &[u8]) {
    let mut input = Input(data);
    let queue_size = 64usize << (input.byte() % 5);
    let producer: [u8; 8] = input.array();
    let read_idx: [u8; 4] = input.array();
    let mut mark = input.u32();
    let mut object = vec![0u8; queue_size + SHM_TRAILER];
    let blocks = input.take(queue_size);
    object[..blocks.len()].copy_from_slice(blocks);
    object[queue_size..queue_size + 8].copy_from_slice(&producer);
    object[queue_size + SHM_READ_IDX..queue_size + SHM_READ_IDX + 4].copy_from_slice(&read_idx);
    let path = scratch.file("consumer.shm");
    std::fs::write(&path, &object).expect("write scratch shm object");
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open scratch shm object");

    let open = |path: &Path| {
        let region = ShmRegion::open(path, queue_size).expect("map scratch shm object");
        let base = region.read_ptr(0, 0) as usize;
        ShmReceiver::new(region).ok().map(|rx| (rx, base))
    };
    let Some((mut rx, mut base)) = open(&path) else { return };
    // The producer's view, for its word.
    let producer = ShmRegion::open(&path, queue_size).expect("map scratch shm object");
    rx.catch_up(mark);
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        match op % 8 {
            0 | 1 => {
                if let Ok(Some(msg)) = rx.front() {
                    check_body(&file, base, queue_size, msg.body());
                }
                if op % 8 == 1 {
                    rx.pop();
                }
            }
            2 => {
                let (write_idx, consumed) = producer_word(&producer);
                set_producer_word(&producer, write_idx.wrapping_add(input.byte() as u32 % 20), consumed);
            }
            3 => {
                // The producer writes a message header into a block.
                let block = input.byte() as usize % (queue_size / 64);
                let header: [u8; 8] = input.array();
                file.write_all_at(&header, (block * 64) as u64).expect("write scratch shm object");
            }
            4 => {
                mark = mark.wrapping_add(input.byte() as u32 % 20);
                rx.catch_up(mark);
            }
            5 => {
                drop(rx);
                let Some(reopened) = open(&path) else { return };
                (rx, base) = reopened;
            }
            6 => rx.pop(),
            _ => rx.catch_up(producer_word(&producer).0),
        }
    }
    // Drain what is left, as a consumer would.
    for _ in 0..queue_size / 64 + 2 {
        match rx.front() {
            Ok(Some(msg)) => check_body(&file, base, queue_size, msg.body()),
            _ => break,
        }
        rx.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch place in a temporary directory of the test's own.
    fn scratch() -> (tempfile::TempDir, Scratch) {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch { dir: dir.path().to_owned(), prefix: String::new() };
        (dir, scratch)
    }

    /// Runs every file under `fuzz/seeds/<target>` and `fuzz/regressions/<target>`
    /// through `run`; returns how many there were.
    fn replay(target: &str, run: impl Fn(&[u8])) -> usize {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut count = 0;
        for kind in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else { continue };
            let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            files.sort();
            for file in files {
                println!("{}", file.display());
                run(&std::fs::read(&file).unwrap());
                count += 1;
            }
        }
        count
    }

    #[test]
    fn tcp_frames_seeds_and_regressions() {
        let (_dir, scratch) = scratch();
        assert!(replay("tcp_frames", |d| tcp_frames_in(&scratch, d)) > 0);
    }

    #[test]
    fn login_seeds_and_regressions() {
        assert!(replay("login", login) > 0);
    }

    #[test]
    fn ptcp_file_seeds_and_regressions() {
        let (_dir, scratch) = scratch();
        assert!(replay("ptcp_file", |d| ptcp_file_in(&scratch, d)) > 0);
    }

    #[test]
    fn shm_consumer_seeds_and_regressions() {
        let (_dir, scratch) = scratch();
        assert!(replay("shm_consumer", |d| shm_consumer_in(&scratch, d)) > 0);
    }

    /// Trivial inputs: empty, one byte, zeros, ones.
    #[test]
    fn degenerate_inputs() {
        let (dir, scratch) = scratch();
        for data in [&[][..], &[0], &[0xff], &[0; 600], &[0xff; 600]] {
            tcp_frames_in(&scratch, data);
            login(data);
            ptcp_file_in(&scratch, data);
            shm_consumer_in(&scratch, data);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "scratch files are removed");
    }

    fn frame<C: Conf>(msg_type: u16, ack: u32, body: &[u8]) -> Vec<u8> {
        let h = MsgHeader { size: (body.len() + HEADER_SIZE) as u16, msg_type, ack_seq: ack }.swap_wire::<C>();
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(body);
        v.resize(v.len().div_ceil(8) * 8, 0);
        v
    }

    /// The seed inputs, built with the crate's own encoders and queues.
    fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let mut out = vec![];
        // tcp_frames: flags, body seed, read sizes, actions, stream.
        let stream_le: Vec<u8> = [
            frame::<FrameLe>(0, 0, &[]),
            frame::<FrameLe>(5, 1, b"abc"),
            frame::<FrameLe>(6, 2, &[7; 100]),
            frame::<FrameLe>(0, 3, &[]),
            frame::<FrameLe>(9, 3, &[1; 200]),
            frame::<FrameLe>(5, 3, b"tail"),
        ]
        .concat();
        let mut d = vec![3 << 2 | 2 << 5, 20, 7, 1, 33, 16, 0, 2 | 8, 4 | 16, 1 | 2 | 4];
        d.extend(&stream_le);
        out.push(("tcp_frames", "le_acks", d));
        let mut d = vec![1, 0, 47, 47, 47, 47, 0, 0, 0, 0];
        d.extend(&stream_le);
        out.push(("tcp_frames", "shm_mode", d));
        let stream_be: Vec<u8> =
            [frame::<FrameBe>(4, 0, &[1; 30]), frame::<FrameBe>(0, 1, &[]), frame::<FrameBe>(4, 2, &[2; 180])].concat();
        let mut d = vec![2 | 2 << 2, 9, 3, 5, 8, 13, 2, 4, 6, 1];
        d.extend(&stream_be);
        out.push(("tcp_frames", "be_growth", d));
        let mut d = vec![0, 0, 10, 10, 10, 10, 0, 0, 0, 0];
        d.extend(frame::<FrameLe>(5, 0, b"ok"));
        d.extend([4, 0, 1, 0, 0, 0, 0, 0]); // size 4
        out.push(("tcp_frames", "invalid_size", d));

        // login: the default and big-endian frames, both messages.
        let l = LoginMsg::<DefaultConf> {
            ack_seq: 3,
            client_seq_start: 1,
            client_seq_end: 4,
            user_data: 9,
            use_shm: true,
            client_name: "client".into(),
            last_server_name: "server".into(),
        };
        out.push(("login", "login_default", l.encode()));
        let mut r = LoginRspMsg::<DefaultConf>::new("server", crate::LoginStatus::Rejected);
        r.error_msg = "Login Reject".into();
        out.push(("login", "rsp_default", r.encode()));
        let l = LoginMsg::<FrameBe> {
            ack_seq: 1,
            client_seq_start: 2,
            client_seq_end: 3,
            user_data: 0x0102_0304_0506_0708,
            use_shm: false,
            client_name: "cli".into(),
            last_server_name: String::new(),
        };
        out.push(("login", "login_be", l.encode()));
        let mut r = LoginRspMsg::<FrameBe>::new("srv", crate::LoginStatus::SeqMismatch);
        r.user_data = [1, 2, 3];
        out.push(("login", "rsp_be", r.encode()));

        // ptcp_file: files made by the queue itself.
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, wrap: bool| -> Vec<u8> {
            let path = dir.path().join(name);
            let mut q = PtcpQueue::<FrameLe>::open(&path, Durability::Never).unwrap();
            for i in 0..4u8 {
                push_msg(&mut q, 1 + i as u16, 40, i);
                q.inc_ack();
            }
            if wrap {
                resend_bytes(&mut q);
                q.ack(3).unwrap();
                push_msg(&mut q, 9, 60, 9);
            }
            q.commit_ack();
            drop(q);
            std::fs::read(&path).unwrap()
        };
        let ops = [0, 1, 2, 30, 3, 100, 4 | 8, 6, 7, 1 | 8, 4, 0, 0, 0, 5, 2, 10, 6];
        let plain = make("plain", false);
        out.push(("ptcp_file", "raw_plain", plain.clone()));
        let mut d = plain.clone();
        d.extend(ops);
        out.push(("ptcp_file", "raw_plain_ops", d));
        let mut d = vec![0];
        d.extend(&make("wrapped", true)[PTCP_PREFIX..]);
        d.extend(ops);
        out.push(("ptcp_file", "fixed_wrapped_ops", d));
        let mut d = vec![2];
        d.extend(&plain[PTCP_PREFIX..]);
        d[1 + PTCP_WRITE_OFF - PTCP_PREFIX] += 33; // folded back to 20 blocks
        out.push(("ptcp_file", "fixed_folded", d));

        // shm_consumer: an object written by our producer, then operations.
        let path = dir.path().join("q.shm");
        let mut tx = crate::shm::ShmSender::new(ShmRegion::open(&path, 512).unwrap()).unwrap();
        for i in 0..4u8 {
            assert!(tx.alloc(20 + 20 * i as usize));
            tx.pending_body().fill(i);
            tx.push(1 + i as u16);
        }
        let object = std::fs::read(&path).unwrap();
        let mut d = vec![3]; // 64 << 3 = 512
        d.extend(&object[512..520]);
        d.extend(&object[512 + SHM_READ_IDX..512 + SHM_READ_IDX + 4]);
        d.extend(2u32.to_le_bytes());
        d.extend(&object[..512]);
        d.extend([0, 1, 1, 2, 3, 3, 0, 8, 0, 0, 1, 0, 0, 0, 4, 1, 5, 6, 7, 1, 1]);
        out.push(("shm_consumer", "four_msgs", d));
        out
    }

    /// `fuzz/seeds/` holds exactly what [`seeds`] makes; after changing an
    /// input layout, rewrite them with `TCPSHM_WRITE_SEEDS=1 cargo test
    /// --release --lib fuzzing`.
    #[test]
    fn seed_files_are_up_to_date() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("seeds");
        let write = std::env::var_os("TCPSHM_WRITE_SEEDS").is_some();
        for (target, name, data) in seeds() {
            let path = root.join(target).join(name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &data).unwrap();
            }
            assert_eq!(std::fs::read(&path).ok(), Some(data), "{} is stale", path.display());
        }
    }
}
