//! The `net` echo pair's handlers, shared by the examples and the bench:
//! a server that echoes every packet, and a client that keeps one packet
//! in flight per connection and records each round trip.
#![allow(dead_code)]

use std::time::Instant;

use hdrhistogram::Histogram;
use tcpshm::net::{ByteOrder, CloseReason, Ctx, Handler, LengthPrefixed, Origin, Session, SessionId};

/// The pair's framing: a 4-byte big-endian length, packets up to 1 MiB.
pub fn codec() -> LengthPrefixed {
    LengthPrefixed::new(4, ByteOrder::Big).expect("4 is a header width").max_packet(1 << 20)
}

/// Echoes every packet.
#[derive(Default)]
pub struct EchoServer {
    pub open: usize,
    pub packets: u64,
    pub send_errors: u64,
}

impl Handler for EchoServer {
    type Session = ();

    fn on_open(&mut self, _: &mut Session<'_>, _: Origin) {
        self.open += 1;
    }

    fn on_packet(&mut self, s: &mut Session<'_>, _: &mut (), packet: &[u8]) {
        self.packets += 1;
        if s.send(packet).is_err() {
            self.send_errors += 1;
        }
    }

    fn on_close(&mut self, _: &mut Ctx<'_>, _: SessionId, _: (), _: &CloseReason) {
        self.open -= 1;
    }
}

/// Ping-pongs `count` packets of `size` bytes on every connection (the first
/// 8 bytes carry the send time), then closes it (or, with `keep_open`,
/// leaves it idle); stops the loop when all `conns` are done.
pub struct EchoClient {
    pub keep_open: bool,
    pub size: usize,
    pub count: u64,
    pub conns: usize,
    pub done: usize,
    pub failed: Vec<String>,
    pub rtt_ns: Histogram<u64>,
    base: Instant,
    pub started: Option<Instant>,
    pub finished: Option<Instant>,
    payload: Vec<u8>,
}

impl EchoClient {
    pub fn new(conns: usize, count: u64, size: usize) -> Self {
        EchoClient {
            keep_open: false,
            size: size.max(8),
            count,
            conns,
            done: 0,
            failed: Vec::new(),
            rtt_ns: Histogram::new(3).expect("3 significant figures"),
            base: Instant::now(),
            started: None,
            finished: None,
            payload: vec![0x5a; size.max(8)],
        }
    }

    fn send(&mut self, s: &mut Session<'_>) {
        let now = self.base.elapsed().as_nanos() as u64;
        self.payload[..8].copy_from_slice(&now.to_le_bytes());
        if let Err(e) = s.send(&self.payload) {
            self.failed.push(format!("send: {e}"));
            s.close();
        }
    }

    /// Seconds from the first open to the last echo.
    pub fn echo_secs(&self) -> f64 {
        match (self.started, self.finished) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Echoes per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.rtt_ns.len() as f64 / self.echo_secs().max(1e-9)
    }

    fn finish_one(&mut self, cx: &mut Ctx<'_>) {
        self.done += 1;
        if self.done == self.conns {
            self.finished = Some(Instant::now());
            cx.stop();
        }
    }
}

impl Handler for EchoClient {
    /// Echoes received on this connection.
    type Session = u64;

    fn on_open(&mut self, s: &mut Session<'_>, _: Origin) -> u64 {
        self.started.get_or_insert_with(Instant::now);
        self.send(s);
        0
    }

    fn on_packet(&mut self, s: &mut Session<'_>, received: &mut u64, packet: &[u8]) {
        let sent = packet.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let now = self.base.elapsed().as_nanos() as u64;
        let _ = self.rtt_ns.record(now.saturating_sub(sent).max(1));
        *received += 1;
        if *received < self.count {
            self.send(s);
        } else if self.keep_open {
            self.finish_one(s);
        } else {
            s.close();
        }
    }

    fn on_close(&mut self, cx: &mut Ctx<'_>, _: SessionId, received: u64, reason: &CloseReason) {
        if received < self.count {
            self.failed.push(format!("closed after {received} echoes: {reason}"));
        }
        self.finish_one(cx);
    }

    fn on_connect_error(
        &mut self,
        cx: &mut Ctx<'_>,
        target: &tcpshm::net::Target,
        error: &std::io::Error,
        _: Option<std::time::Duration>,
    ) {
        self.failed.push(format!("connect to {target}: {error}"));
        self.finish_one(cx);
    }
}
