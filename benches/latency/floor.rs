//! The hardware floor, measured by the same binary with the same pinning:
//! what the machine gives two threads with nothing of ours in between.
//!
//! - latency: a cache-line ping-pong (one atomic flag each way, busy spin) and
//!   a loopback TCP ping-pong (TCP_NODELAY, non-blocking reads in a busy loop,
//!   the peer reads each frame whole and writes it back);
//! - throughput: the same framed bytes through a minimal single-producer
//!   single-consumer ring in memory, and written in batches to a loopback
//!   TCP socket whose reader counts them.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::run::{pin, PingClient, PingServer, Pins, Stream};
use crate::shape::{frame_len, Messages, Shape};

/// The two flags of a cache-line ping-pong, each on its own cache line.
#[derive(Default)]
pub struct CacheLines {
    ping: CachePadded<AtomicU64>,
    pong: CachePadded<AtomicU64>,
}

impl CacheLines {
    /// The client stores `i` in one line, the server spins until it sees it
    /// and stores `i` in the other: the fastest round trip two threads have.
    pub fn ends(&self) -> (CacheLineClient<'_>, CacheLineServer<'_>) {
        (CacheLineClient { lines: self, i: 0 }, CacheLineServer { lines: self, i: 0 })
    }
}

/// Cache lines in a shared-memory file, for a ping-pong between processes
/// (`--processes`): one side creates the file, the other maps it too.
pub struct SharedLines {
    map: memmap2::MmapRaw,
    path: PathBuf,
    owner: bool,
}

impl SharedLines {
    /// Creates (zeroed) and maps the file at `path`; removed when dropped.
    pub fn create(path: PathBuf) -> SharedLines {
        let file = std::fs::File::create_new(&path).expect("create the floor's shm file");
        file.set_len(std::mem::size_of::<CacheLines>() as u64).expect("size the floor's shm file");
        SharedLines { map: memmap2::MmapRaw::map_raw(&file).expect("map the floor's shm file"), path, owner: true }
    }

    /// Maps the file another process created.
    pub fn open(path: PathBuf) -> SharedLines {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open the floor's shm file");
        SharedLines { map: memmap2::MmapRaw::map_raw(&file).expect("map the floor's shm file"), path, owner: false }
    }

    /// The lines, shared with the other process.
    pub fn lines(&self) -> &CacheLines {
        assert!(self.map.len() >= std::mem::size_of::<CacheLines>());
        // SAFETY: the mapping is page-aligned (more than CacheLines needs),
        // large enough (checked), and lives as long as the borrow; its bytes
        // start zeroed, a valid CacheLines, and both processes touch them
        // only through the atomics.
        unsafe { &*(self.map.as_ptr() as *const CacheLines) }
    }
}

impl Drop for SharedLines {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The client end of the cache-line ping-pong.
pub struct CacheLineClient<'a> {
    lines: &'a CacheLines,
    i: u64,
}

impl PingClient for CacheLineClient<'_> {
    #[inline]
    fn round_trip(&mut self) {
        self.i += 1;
        self.lines.ping.store(self.i, Release);
        while self.lines.pong.load(Acquire) != self.i {
            std::hint::spin_loop();
        }
    }
}

/// The server end of the cache-line ping-pong.
pub struct CacheLineServer<'a> {
    lines: &'a CacheLines,
    i: u64,
}

impl PingServer for CacheLineServer<'_> {
    fn serve(&mut self, count: u64) {
        for _ in 0..count {
            self.i += 1;
            while self.lines.ping.load(Acquire) != self.i {
                std::hint::spin_loop();
            }
            self.lines.pong.store(self.i, Release);
        }
    }
}

/// Reads until `buf` is full, spinning on `WouldBlock`.
fn read_full(sock: &mut TcpStream, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        match sock.read(&mut buf[got..]) {
            Ok(0) => panic!("raw TCP peer closed"),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("raw TCP read: {e}"),
        }
    }
}

/// Writes all of `buf`, spinning on `WouldBlock`.
fn write_full(sock: &mut TcpStream, buf: &[u8]) {
    let mut put = 0;
    while put < buf.len() {
        match sock.write(&buf[put..]) {
            Ok(n) => put += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("raw TCP write: {e}"),
        }
    }
}

/// A connected loopback pair, both ends non-blocking with TCP_NODELAY.
fn loopback_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let client = TcpStream::connect(listener.local_addr().expect("local addr")).expect("connect loopback");
    let (server, _) = listener.accept().expect("accept loopback");
    for s in [&client, &server] {
        tune(s);
    }
    (client, server)
}

/// The client end of a raw loopback TCP ping-pong of the case's frames
/// (header and padded body, as ours put them on the wire).
pub struct TcpClient {
    sock: TcpStream,
    msgs: Messages,
    frame: Vec<u8>,
}

/// The server end: reads each frame whole and writes it back.
pub struct TcpServer {
    sock: TcpStream,
    msgs: Messages,
    frame: Vec<u8>,
}

/// Both ends of a raw loopback TCP ping-pong of `shape`'s frames.
pub fn tcp_ends(shape: Shape) -> (TcpClient, TcpServer) {
    let (client, server) = loopback_pair();
    (TcpClient::new(client, shape), TcpServer::new(server, shape))
}

/// Makes a connected socket non-blocking with TCP_NODELAY.
fn tune(sock: &TcpStream) {
    sock.set_nodelay(true).expect("TCP_NODELAY");
    sock.set_nonblocking(true).expect("non-blocking");
}

impl TcpClient {
    /// The client end over `sock`, a connected loopback socket.
    pub fn new(sock: TcpStream, shape: Shape) -> TcpClient {
        tune(&sock);
        TcpClient { sock, msgs: Messages::new(shape), frame: vec![0u8; frame_len(shape.max_body())] }
    }
}

impl TcpServer {
    /// The server end over `sock`, a connected loopback socket.
    pub fn new(sock: TcpStream, shape: Shape) -> TcpServer {
        tune(&sock);
        TcpServer { sock, msgs: Messages::new(shape), frame: vec![0u8; frame_len(shape.max_body())] }
    }
}

impl PingClient for TcpClient {
    #[inline]
    fn round_trip(&mut self) {
        let len = frame_len(self.msgs.next_msg().1);
        write_full(&mut self.sock, &self.frame[..len]);
        read_full(&mut self.sock, &mut self.frame[..len]);
    }
}

impl PingServer for TcpServer {
    fn serve(&mut self, count: u64) {
        for _ in 0..count {
            let len = frame_len(self.msgs.next_msg().1);
            read_full(&mut self.sock, &mut self.frame[..len]);
            write_full(&mut self.sock, &self.frame[..len]);
        }
    }
}

/// One-way streaming of `count` frames through a single-producer
/// single-consumer byte ring of `ring` bytes: the producer copies each frame
/// in and publishes every batch with one release store; the consumer reads
/// each frame's length from its header, as a queue consumer must. Returns
/// the time from the first frame written to the last one read.
pub fn memory_stream(stream: Stream, pins: Pins, ring: usize) -> Duration {
    assert!(ring.is_power_of_two(), "the ring's size is a power of two");
    let buf: Vec<AtomicU64> = (0..ring / 8).map(|_| AtomicU64::new(0)).collect();
    let words = buf.len();
    let mask = words as u64 - 1;
    let head = CachePadded::new(AtomicU64::new(0)); // words published
    let tail = CachePadded::new(AtomicU64::new(0)); // words consumed
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            pin(pins.server);
            let (mut read, mut seen, mut count) = (0u64, 0u64, 0u64);
            while count < stream.count {
                if read == seen {
                    seen = head.load(Acquire);
                    if read == seen {
                        std::hint::spin_loop();
                        continue;
                    }
                }
                // The header word holds the frame's length in words.
                let len = buf[(read & mask) as usize].load(Relaxed);
                read += len;
                count += 1;
                tail.store(read, Release);
            }
            Instant::now()
        });
        pin(pins.client);
        let mut msgs = Messages::new(stream.shape);
        let (mut write, mut free_until) = (0u64, words as u64);
        let start = Instant::now();
        let mut sent = 0;
        while sent < stream.count {
            let batch = stream.batch.min(stream.count - sent);
            for _ in 0..batch {
                let len = (frame_len(msgs.next_msg().1) / 8) as u64;
                while write + len > free_until {
                    free_until = tail.load(Acquire) + words as u64;
                }
                buf[(write & mask) as usize].store(len, Relaxed);
                for w in 1..len {
                    buf[((write + w) & mask) as usize].store(w, Relaxed);
                }
                write += len;
            }
            head.store(write, Release);
            sent += batch;
        }
        consumer.join().expect("consumer thread") - start
    })
}

/// One-way streaming of `count` frames over loopback TCP: the writer sends
/// each batch of frames in one write, the reader counts bytes. Returns the
/// time from the first write to the last byte read.
pub fn tcp_stream(stream: Stream, pins: Pins) -> Duration {
    let (mut client, mut server) = loopback_pair();
    let mut msgs = Messages::new(stream.shape);
    let lens: Vec<usize> = (0..stream.count).map(|_| frame_len(msgs.next_msg().1)).collect();
    let total: usize = lens.iter().sum();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            pin(pins.server);
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0;
            while got < total {
                match server.read(&mut buf) {
                    Ok(0) => panic!("raw TCP writer closed"),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) => panic!("raw TCP read: {e}"),
                }
            }
            Instant::now()
        });
        pin(pins.client);
        let batch_bytes = frame_len(stream.shape.max_body()) * stream.batch as usize;
        let mut out = vec![0u8; batch_bytes];
        let start = Instant::now();
        for chunk in lens.chunks(stream.batch as usize) {
            let bytes: usize = chunk.iter().sum();
            // The frames' headers: the size field, as ours write them.
            let mut at = 0;
            for &len in chunk {
                out[at..at + 2].copy_from_slice(&(len as u16).to_le_bytes());
                at += len;
            }
            write_full(&mut client, &out[..bytes]);
        }
        reader.join().expect("reader thread") - start
    })
}
