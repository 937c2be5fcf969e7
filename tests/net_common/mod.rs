//! Helpers of the `net` tests: bounded loop driving instead of sleeps, a
//! recording echo handler, close reasons as names.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tcpshm::net::{ByteOrder, CloseReason, Ctx, EventLoop, Handler, LengthPrefixed, Origin, Session, SessionId};

/// Longest any test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Runs `el` until `done` holds, failing after [`PATIENCE`] with `what`.
pub fn run_until(el: &mut EventLoop, what: &str, mut done: impl FnMut(&mut EventLoop) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done(el) {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        el.run_once(Some(Duration::from_millis(10))).expect("loop iteration");
    }
}

/// The tests' codec: a 2-byte big-endian length, packets up to 4 KiB.
pub fn codec() -> LengthPrefixed {
    LengthPrefixed::new(2, ByteOrder::Big).unwrap().max_packet(4096)
}

/// `payload` framed by [`codec`].
pub fn frame(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as u16).to_be_bytes()[..], payload].concat()
}

/// A close reason's variant name.
pub fn reason_name(r: &CloseReason) -> &'static str {
    match r {
        CloseReason::Closed => "Closed",
        CloseReason::ClosedAfterSend => "ClosedAfterSend",
        CloseReason::Finished => "Finished",
        CloseReason::ReadError(_) => "ReadError",
        CloseReason::WriteError(_) => "WriteError",
        CloseReason::Overflow { .. } => "Overflow",
        CloseReason::Decode(_) => "Decode",
        CloseReason::IdleTimeout => "IdleTimeout",
        CloseReason::Shutdown => "Shutdown",
        CloseReason::AdoptRefused => "AdoptRefused",
        _ => "other",
    }
}

/// Echoes every packet and records what happened.
#[derive(Default)]
pub struct Echo {
    pub opened: Vec<(SessionId, Origin)>,
    pub packets: usize,
    pub closed: Vec<(SessionId, &'static str)>,
}

impl Handler for Echo {
    type Session = ();

    fn on_open(&mut self, s: &mut Session<'_>, origin: Origin) {
        self.opened.push((s.id(), origin));
    }

    fn on_packet(&mut self, s: &mut Session<'_>, _: &mut (), packet: &[u8]) {
        self.packets += 1;
        s.send(packet).expect("echo");
    }

    fn on_close(&mut self, _: &mut Ctx<'_>, id: SessionId, _: (), reason: &CloseReason) {
        self.closed.push((id, reason_name(reason)));
    }
}

/// Records every packet and close; sends nothing by itself.
#[derive(Default)]
pub struct Recorder {
    pub opened: Vec<SessionId>,
    pub packets: Vec<Vec<u8>>,
    pub closed: Vec<(SessionId, &'static str)>,
    pub connect_errors: Vec<(std::io::ErrorKind, Option<Duration>)>,
    pub accept_errors: Vec<(Option<i32>, Option<Duration>)>,
}

impl Handler for Recorder {
    type Session = ();

    fn on_open(&mut self, s: &mut Session<'_>, _: Origin) {
        self.opened.push(s.id());
    }

    fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), packet: &[u8]) {
        self.packets.push(packet.to_vec());
    }

    fn on_close(&mut self, _: &mut Ctx<'_>, id: SessionId, _: (), reason: &CloseReason) {
        self.closed.push((id, reason_name(reason)));
    }

    fn on_connect_error(
        &mut self,
        _: &mut Ctx<'_>,
        _: &tcpshm::net::Target,
        error: &std::io::Error,
        retry: Option<Duration>,
    ) {
        self.connect_errors.push((error.kind(), retry));
    }

    fn on_accept_error(&mut self, _: &mut Ctx<'_>, error: &std::io::Error, pause: Option<Duration>) {
        self.accept_errors.push((error.raw_os_error(), pause));
    }
}

/// Sends `payload` when it opens and records what comes back.
pub struct Ping {
    pub payload: Vec<u8>,
    pub opened: usize,
    pub echoes: Vec<Vec<u8>>,
    pub closed: Vec<&'static str>,
    pub connect_errors: usize,
}

impl Ping {
    pub fn new(payload: &[u8]) -> Self {
        Ping { payload: payload.to_vec(), opened: 0, echoes: Vec::new(), closed: Vec::new(), connect_errors: 0 }
    }
}

impl Handler for Ping {
    type Session = ();

    fn on_open(&mut self, s: &mut Session<'_>, _: Origin) {
        self.opened += 1;
        s.send(&self.payload).expect("a fresh session takes a packet");
    }

    fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), packet: &[u8]) {
        self.echoes.push(packet.to_vec());
    }

    fn on_close(&mut self, _: &mut Ctx<'_>, _: SessionId, _: (), reason: &CloseReason) {
        self.closed.push(reason_name(reason));
    }

    fn on_connect_error(&mut self, _: &mut Ctx<'_>, _: &tcpshm::net::Target, _: &std::io::Error, _: Option<Duration>) {
        self.connect_errors += 1;
    }
}
