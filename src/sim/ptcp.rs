//! The persistent protocol under simulation: one real [`TcpShmClient`] and
//! one real [`TcpShmServer`] of this crate, with their queue files in a
//! temporary directory, exchange messages over a simulated network
//! ([`net`](super::net)) in one thread, each step chosen by a seeded
//! generator. What a crash leaves is what the files hold: a crashed side's
//! objects are dropped (no destructor of ours stores anything) and made
//! again from the same directory.
//!
//! The steps: the applications push (`push`, `push_more`, full queues
//! refused), the handlers read what is delivered and pop it, leave it for
//! later, or reply with a pop (alloc, `pop_received`, push); both sides poll
//! (heartbeats, early acks, timeouts, resends); the network delivers written
//! bytes in pieces of any size, resets the connection or makes it silent
//! (half open, found only by a timeout); the client logs in and resumes (its
//! login and the server's answer cross the same simulated network); time
//! jumps; either side crashes between any two steps and restarts, the
//! server sometimes under another day's name, a new one or an earlier one
//! (the C++ rule: the client's next login empties both sides' queues).
//!
//! The reference model is the list of messages each side pushed and how
//! many of them the peer's handler popped (a new day's first login drops
//! what was unpopped from the old day, as the protocol says). Every delivery must be the first
//! unpopped message, with its type and exact bytes: nothing skipped,
//! reordered, changed or invented, and a popped message never again, across
//! crashes and reconnects. Storms of faults alternate with calm spells, in
//! which both sides run, the network passes everything and the handlers pop:
//! by the end of a calm spell of bounded simulated time everything pushed
//! must have been delivered and popped (no stall).
//!
//! `cargo test --release --lib sim::ptcp` runs `TCPSHM_SIM_SEEDS` seeds
//! (default 2,000) from `TCPSHM_SIM_FIRST` (default 0); a failure prints its
//! seed and the trace of its last steps, and
//! `TCPSHM_SIM_SEED=<seed> cargo test --release --lib sim::ptcp` replays it.

use std::net::SocketAddr;
use std::path::Path;

use super::net::{End, Net, SMALL_WRITE};
use super::rng::Rng;
use crate::client::{ClientHandler, ConnectError, TcpShmClient};
use crate::conf::{Conf, ServerConf};
use crate::connection::Connection;
use crate::error::Error;
use crate::msg::{LoginLayout, LoginMsg, LoginRspMsg, Msg, SeqMismatch};
use crate::ptcp::wire::Wire;
use crate::ptcp::Durability;
use crate::server::{ServerHandler, TcpShmServer};

/// Small queues and buffers, so rings wrap, queues fill and buffers grow
/// within a few steps; the receive buffer may hold the peer's whole queue
/// and some heartbeats, as `Conf::TCP_RECV_BUF_MAX_SIZE` asks.
struct SimConf;
impl Conf for SimConf {
    const TCP_QUEUE_SIZE: usize = 512;
    const TCP_RECV_BUF_INIT_SIZE: usize = 64;
    const TCP_RECV_BUF_MAX_SIZE: usize = 1024;
    const CONNECTION_TIMEOUT: i64 = 40;
    const HEARTBEAT_INTERVAL: i64 = 10;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}
impl ServerConf for SimConf {
    const MAX_SHM_GRPS: usize = 0;
    const MAX_TCP_CONNS_PER_GRP: usize = 1;
}

const CLIENT: &str = "simc";

/// The server's name on `day` (a new day, a new name: the C++ rule).
fn server_name(day: u32) -> String {
    format!("sims{day}")
}
/// The sides, also the index of the direction a side sends in.
const C: usize = 0;
const S: usize = 1;
/// How long a client waits for a login response before giving up.
const LOGIN_TIMEOUT: i64 = 20;
/// A calm spell's length in simulated time: enough for a half-open link
/// to time out on both sides, a new login and the traffic to drain.
const CALM_TIME: i64 = 4 * SimConf::CONNECTION_TIMEOUT;
const STEPS: usize = 3000;

/// The body of the `k`-th message a side sends, so a delivery can be
/// checked byte for byte.
fn body(side: usize, k: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (k.wrapping_mul(31) ^ i.wrapping_mul(7) ^ side.wrapping_mul(101)) as u8).collect()
}

fn msg_type(k: usize) -> u16 {
    1 + (k % 1000) as u16
}

/// A message as the model knows it.
#[derive(Clone)]
struct Sent {
    msg_type: u16,
    body: Vec<u8>,
}

/// Messages one side pushed into one queue, and how many the peer popped.
#[derive(Default)]
struct Queue {
    /// Every message pushed that is still promised, in order.
    sent: Vec<Sent>,
    popped: usize,
}

impl Queue {
    /// Forgets the unpopped messages (the protocol discarded them).
    fn discard_unpopped(&mut self) {
        self.sent.truncate(self.popped);
    }

    fn all_popped(&self) -> bool {
        self.popped == self.sent.len()
    }
}

/// The reference: what each side pushed, and how many of them the other
/// side popped. The client has one queue to the server; the server has one
/// per name it ran under (a queue file per name), and the client reads the
/// one of the server it is logged in to.
#[derive(Default)]
struct Model {
    client: Queue,
    /// The server's queues, by day.
    server: std::collections::BTreeMap<u32, Queue>,
    /// Messages each side ever pushed: numbers their bodies, never reused.
    serial: [usize; 2],
    /// The server's day: its name is `sims<day>`.
    day: u32,
    /// The latest day so far.
    days: u32,
    /// The first broken promise.
    violation: Option<String>,
    /// Deliveries checked.
    delivered: u64,
}

impl Model {
    fn fail(&mut self, why: String) {
        self.violation.get_or_insert(why);
    }

    /// The queue `side` pushes into; `day` names the server's.
    fn queue(&mut self, side: usize, day: u32) -> &mut Queue {
        if side == C {
            &mut self.client
        } else {
            self.server.entry(day).or_default()
        }
    }

    /// A new message from `side` of `len` bytes: its type and body.
    fn make(&mut self, side: usize, len: usize) -> Sent {
        let k = self.serial[side];
        self.serial[side] += 1;
        Sent { msg_type: msg_type(k), body: body(side, k, len) }
    }

    /// The server took a login from a client that last knew another server
    /// (a new day) or none: the protocol discards what is unpopped in this
    /// name's queue, except at the client's first login ever, where what
    /// this name pushed (after logins the client did not finish) stays
    /// promised. A client that knew another server may have popped it
    /// already. What the server pushes from now on is promised.
    fn server_new_day(&mut self, first_ever: bool) {
        if !first_ever {
            let day = self.day;
            self.queue(S, day).discard_unpopped();
        }
    }

    /// The client finished a login to the server of `day`: on a new day it
    /// discards what is unpopped in its own queue; either way the other
    /// names' queues are out of its reach (going back to one is a new day
    /// for that server, which empties it).
    fn client_logged_in(&mut self, day: u32, new_day: bool) {
        if new_day {
            self.client.discard_unpopped();
        }
        for (d, q) in &mut self.server {
            if *d != day {
                q.discard_unpopped();
            }
        }
    }

    /// Whether everything promised was popped.
    fn all_popped(&self) -> bool {
        self.client.all_popped() && self.server.values().all(Queue::all_popped)
    }
}

/// The day of a server by its name.
fn day_of(name: &str) -> u32 {
    name.trim_start_matches("sims").parse().unwrap_or(u32::MAX)
}

/// The handlers of both sides: check each delivery against the model, then
/// pop, reply with a pop, or leave the message.
struct Hands<'a> {
    side: usize,
    model: &'a mut Model,
    rng: &'a mut Rng,
    /// In a calm spell every message is popped (a reply if it fits).
    calm: bool,
    /// At the end of a calm spell nothing new is pushed, replies neither.
    quiet: bool,
    now: i64,
}

impl Hands<'_> {
    fn on_msg(&mut self, conn: &mut Connection<SimConf>, msg: Msg<'_>) {
        let from = 1 - self.side;
        let day = day_of(conn.remote_name());
        let queue = self.model.queue(from, day);
        let k = queue.popped;
        let broken = match queue.sent.get(k) {
            None => Some(format!("side {} got a message {from} never pushed (#{k})", self.side)),
            Some(m) if m.msg_type != msg.msg_type() || m.body[..] != msg.body()[..] => {
                let got = (msg.msg_type(), msg.body().len());
                let same_size = got == (m.msg_type, m.body.len());
                Some(format!(
                    "side {} expected #{k} (type {}, {} bytes), got type {} with {} bytes{}",
                    self.side,
                    m.msg_type,
                    m.body.len(),
                    got.0,
                    got.1,
                    if same_size { " that differ" } else { "" }
                ))
            }
            Some(_) => None,
        };
        if let Some(why) = broken {
            return self.model.fail(why);
        }
        self.model.delivered += 1;
        let choice = self.rng.below(8);
        if !self.calm && choice == 0 {
            return; // left for the next poll
        }
        if choice < 4 && !self.quiet {
            let (len, more) = (self.rng.range(0, 64), self.rng.chance(1, 4));
            if let Some(mut slot) = conn.alloc(len) {
                let m = self.model.make(self.side, len);
                slot.copy_from_slice(&m.body);
                slot.pop_received();
                if more {
                    slot.push_more(m.msg_type);
                } else {
                    slot.push(m.msg_type);
                }
                self.model.queue(from, day).popped += 1;
                let today = self.model.day;
                self.model.queue(self.side, today).sent.push(m);
                return;
            }
            if !self.calm {
                return; // the reply waits for room: so does the message
            }
        }
        conn.pop();
        self.model.queue(from, day).popped += 1;
    }
}

impl ClientHandler<SimConf> for Hands<'_> {
    fn on_server_msg(&mut self, conn: &mut Connection<SimConf>, msg: Msg<'_>) {
        self.on_msg(conn, msg)
    }
    fn on_login_success(&mut self, _: &LoginRspMsg<SimConf>) -> Option<i64> {
        Some(self.now)
    }
    fn on_seq_number_mismatch(&mut self, m: &SeqMismatch) {
        self.model.fail(format!("client: seq number mismatch {m}"))
    }
    fn on_system_error(&mut self, e: &Error) {
        self.model.fail(format!("client: system error {e}"))
    }
}

impl ServerHandler<SimConf> for Hands<'_> {
    fn on_client_msg(&mut self, conn: &mut Connection<SimConf>, msg: Msg<'_>) {
        self.on_msg(conn, msg)
    }
    fn on_client_file_error(&mut self, _: &Connection<SimConf>, e: &Error) {
        self.model.fail(format!("server: file error {e}"))
    }
    fn on_seq_number_mismatch(&mut self, _: &Connection<SimConf>, m: &SeqMismatch) {
        self.model.fail(format!("server: seq number mismatch {m}"))
    }
    fn on_system_error(&mut self, e: &Error) {
        self.model.fail(format!("server: system error {e}"))
    }
}

/// A login on its way: sent by the client, maybe answered by the server.
struct Login {
    net: Net,
    msg: LoginMsg<SimConf>,
    client_end: End,
    /// The server's end until the server takes the login.
    server_end: Option<End>,
    since: i64,
    /// Started in a calm spell.
    calm: bool,
}

/// What a run did, to show that the faults and paths happened.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    steps: u64,
    delivered: u64,
    logins: u64,
    refused: u64,
    crashes: u64,
    net_faults: u64,
    new_days: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.steps += o.steps;
        self.delivered += o.delivered;
        self.logins += o.logins;
        self.refused += o.refused;
        self.crashes += o.crashes;
        self.net_faults += o.net_faults;
        self.new_days += o.new_days;
    }
}

/// One run of the simulation.
struct Sim<'d> {
    dir: &'d Path,
    rng: Rng,
    now: i64,
    model: Model,
    client: Option<TcpShmClient<SimConf>>,
    server: Option<TcpShmServer<SimConf>>,
    /// The network of the latest connection (a login's or a link's).
    net: Option<Net>,
    login: Option<Login>,
    calm: bool,
    quiet: bool,
    /// Logins started and finished in the current calm spell: one may be
    /// needed to get over the storm; a second means a good link dropped
    /// (no heartbeat, say).
    calm_logins: u32,
    /// The seed's durability policy: one seed in 64 flushes every push (an
    /// msync per push and pop: slow), so `publish_durably` runs under the same faults.
    durability: Durability,
    /// The last steps, for the report of a failure.
    trace: Vec<String>,
    /// All of the trace (replaying one seed) or only its tail.
    full_trace: bool,
    stats: Stats,
}

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

impl<'d> Sim<'d> {
    fn new(seed: u64, dir: &'d Path, full_trace: bool) -> Self {
        Sim {
            dir,
            rng: Rng::new(seed),
            now: 0,
            model: Model::default(),
            client: None,
            server: None,
            net: None,
            login: None,
            calm: false,
            quiet: false,
            calm_logins: 0,
            durability: if seed % 64 == 63 { Durability::EveryPush } else { Durability::Never },
            trace: Vec::new(),
            full_trace,
            stats: Stats::default(),
        }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if !self.full_trace && self.trace.len() >= 64 {
            self.trace.drain(..32);
        }
        let line = format!("t={} {}", self.now, what());
        self.trace.push(line);
    }

    fn start_client(&mut self) {
        match TcpShmClient::with_durability(CLIENT, self.dir, self.durability) {
            Ok(c) => self.client = Some(c),
            Err(e) => self.model.fail(format!("client restart: {e}")),
        }
    }

    fn start_server(&mut self) {
        match TcpShmServer::with_durability(&server_name(self.model.day), self.dir, self.durability) {
            Ok(s) => self.server = Some(s),
            Err(e) => self.model.fail(format!("server restart: {e}")),
        }
    }

    /// The application of `side` pushes a message, if it can.
    fn app_push(&mut self, side: usize) {
        if self.quiet {
            return;
        }
        let len =
            if self.rng.chance(1, 16) { self.rng.range(0, SimConf::TCP_QUEUE_SIZE) } else { self.rng.range(0, 64) };
        let more = self.rng.chance(1, 3);
        let day = self.model.day;
        let k = self.model.queue(side, day).sent.len();
        let m = self.model.make(side, len);
        let mut pushed = false;
        let mut push = |conn: &mut Connection<SimConf>| {
            if pushed {
                return;
            }
            let Some(mut slot) = conn.alloc(len) else { return };
            slot.copy_from_slice(&m.body);
            if more {
                slot.push_more(m.msg_type);
            } else {
                slot.push(m.msg_type);
            }
            pushed = true;
        };
        match side {
            C => {
                let Some(client) = &mut self.client else { return };
                push(client.connection());
            }
            _ => {
                let Some(server) = &mut self.server else { return };
                server.tcp_group(0).for_each_connection(push);
            }
        }
        if pushed {
            self.note(|| format!("{} pushes #{k} ({len} bytes{})", name(side), if more { ", more" } else { "" }));
            self.model.queue(side, day).sent.push(m);
        }
    }

    fn poll(&mut self, side: usize) {
        let mut hands = Hands {
            side,
            model: &mut self.model,
            rng: &mut self.rng,
            calm: self.calm,
            quiet: self.quiet,
            now: self.now,
        };
        match side {
            C => {
                if let Some(client) = &mut self.client {
                    client.poll_tcp(self.now, &mut hands);
                }
            }
            _ => {
                if let Some(server) = &mut self.server {
                    server.poll_tcp(self.now, 0, &mut hands);
                    server.poll_ctl(self.now, &mut hands);
                }
            }
        }
    }

    /// The client starts a login if it is down and has none on its way.
    fn connect(&mut self) {
        let Some(client) = &mut self.client else { return };
        if self.login.is_some() || !client.connection().is_closed() {
            return;
        }
        let msg = match client.begin_login(false, 0) {
            Ok(msg) => msg,
            Err(e) => return self.model.fail(format!("begin_login: {e}")),
        };
        let (net, client_end, server_end) = Net::pair(self.rng.next_u64(), self.rng.range(SMALL_WRITE, 4096));
        net.write_all(0, &msg.encode());
        self.note(|| {
            format!("client logs in (ack {}, seqs {}..{})", msg.ack_seq, msg.client_seq_start, msg.client_seq_end)
        });
        self.net = Some(net.clone());
        self.login =
            Some(Login { net, msg, client_end, server_end: Some(server_end), since: self.now, calm: self.calm });
    }

    /// Moves a login on: the server takes it once it arrived, the client
    /// takes the answer once that arrived, or gives up after a timeout.
    fn advance_login(&mut self) {
        let Some(login) = &mut self.login else { return };
        let now = self.now;
        if now - login.since > LOGIN_TIMEOUT {
            // The client's connect timeout: whatever was lost, it gives up.
            self.login = None;
            return self.note(|| "login timed out".into());
        }
        if login.server_end.is_some() {
            let Some(server) = &mut self.server else {
                // Nobody listens: refused.
                self.login = None;
                return self.note(|| "login refused: the server is down".into());
            };
            let mut frame = vec![0; LoginLayout::<SimConf>::LOGIN_FRAME];
            if !login.net.read_exact(1, &mut frame) {
                return;
            }
            let end = login.server_end.take().map(Wire::Sim);
            let live_before = live(server);
            let mut hands =
                Hands { side: S, model: &mut self.model, rng: &mut self.rng, calm: self.calm, quiet: self.quiet, now };
            if let Some(wire) = end {
                server.ctl_mut().serve_login(now, &frame, peer(), wire, &mut hands);
            }
            let accepted = !live_before && live(server);
            if accepted && login.msg.last_server_name != server_name(self.model.day) {
                let first_ever = login.msg.last_server_name.is_empty();
                self.model.server_new_day(first_ever);
            }
            return self.note(|| format!("server {} the login", if accepted { "takes" } else { "refuses" }));
        }
        let mut frame = vec![0; LoginLayout::<SimConf>::RSP_FRAME];
        if !login.net.read_exact(0, &mut frame) {
            return;
        }
        let Some(Login { msg, client_end, calm: calm_login, .. }) = self.login.take() else { return };
        let Some(client) = &mut self.client else { return };
        let rsp = match LoginRspMsg::<SimConf>::decode(&frame) {
            Ok(rsp) => rsp,
            Err(e) => return self.model.fail(format!("bad login response: {e:?}")),
        };
        let mut hands =
            Hands { side: C, model: &mut self.model, rng: &mut self.rng, calm: self.calm, quiet: self.quiet, now };
        let (new_day, rsp_day) = (rsp.server_name != msg.last_server_name, day_of(&rsp.server_name));
        let result = client.finish_login(&msg, Wire::Sim(client_end), rsp, &mut hands);
        let outcome = match result {
            Ok(()) => {
                self.stats.logins += 1;
                self.calm_logins += calm_login as u32;
                self.model.client_logged_in(rsp_day, new_day);
                if new_day {
                    "logged in to a server it did not know".to_string()
                } else {
                    "logged in".to_string()
                }
            }
            Err(ConnectError::Rejected(why)) if why == "Already loggned on" => {
                self.stats.refused += 1;
                format!("rejected: {why}")
            }
            Err(e) => {
                self.model.fail(format!("login failed: {e}"));
                format!("failed: {e}")
            }
        };
        self.note(|| format!("client: {outcome}"));
    }

    fn crash(&mut self, side: usize) {
        self.stats.crashes += 1;
        self.note(|| format!("{} crashes", name(side)));
        match side {
            C => {
                self.client = None;
                self.login = None;
            }
            _ => self.server = None,
        }
    }

    fn step(&mut self) {
        self.stats.steps += 1;
        let calm = self.calm;
        match self.rng.below(100) {
            0..12 => self.app_push(C),
            12..20 => self.app_push(S),
            20..35 => self.poll(C),
            35..50 => self.poll(S),
            50..70 => {
                let side = self.rng.below(2) as usize;
                if let Some(net) = &self.net {
                    let n = if calm || self.rng.chance(1, 2) { usize::MAX } else { self.rng.range(1, 64) };
                    net.deliver(side, n);
                }
            }
            70..80 => {
                let dt = self.rng.range(0, 3) as i64;
                self.now += dt;
            }
            80..85 => self.connect(),
            85..93 => self.advance_login(),
            93..95 if !calm && self.rng.chance(1, 8) => {
                let dt =
                    self.rng.range(SimConf::CONNECTION_TIMEOUT as usize / 2, 2 * SimConf::CONNECTION_TIMEOUT as usize);
                self.note(|| format!("time jumps by {dt}"));
                self.now += dt as i64;
            }
            95 if !calm && self.rng.chance(1, 4) => {
                if let Some(net) = &self.net {
                    self.stats.net_faults += 1;
                    if self.rng.chance(1, 2) {
                        net.reset();
                        self.note(|| "the network resets the connection".into());
                    } else {
                        net.go_silent();
                        self.note(|| "the connection goes silent (half open)".into());
                    }
                }
            }
            96 if !calm && self.client.is_some() && self.rng.chance(1, 4) => self.crash(C),
            97 if !calm && self.server.is_some() && self.rng.chance(1, 4) => self.crash(S),
            98 if self.client.is_none() && (calm || self.rng.chance(1, 2)) => {
                self.note(|| "client restarts".into());
                self.start_client();
            }
            99 if self.server.is_none() && (calm || self.rng.chance(1, 2)) => {
                if !calm && self.rng.chance(1, 8) {
                    // A new name, or one of the earlier days' again.
                    let day = self.rng.below(self.model.days as u64 + 2) as u32;
                    self.model.days = self.model.days.max(day);
                    self.model.day = day;
                    self.stats.new_days += 1;
                    self.note(|| format!("server restarts on another day, as {}", server_name(day)));
                } else {
                    self.note(|| "server restarts".into());
                }
                self.start_server();
            }
            _ => {}
        }
    }

    /// A calm spell: no faults, both sides up, everything passes and is
    /// popped. New pushes stop halfway; by the end everything pushed must
    /// have been popped on the other side.
    fn calm_spell(&mut self) {
        self.calm = true;
        self.note(|| "calm".into());
        let end = self.now + CALM_TIME;
        let quiet = self.now + CALM_TIME / 2;
        while self.now < end && self.model.violation.is_none() {
            if self.client.is_none() {
                self.start_client();
            }
            if self.server.is_none() {
                self.start_server();
            }
            self.quiet = self.now >= quiet;
            self.step();
        }
        (self.calm, self.quiet) = (false, false);
        if self.calm_logins > 1 && self.model.violation.is_none() {
            self.model.fail(format!("a good link dropped: {} logins in one calm spell", self.calm_logins));
        }
        self.calm_logins = 0;
        if !self.model.all_popped() && self.model.violation.is_none() {
            let q = &self.model.client;
            let (cp, cs) = (q.popped, q.sent.len());
            let server: Vec<String> = self
                .model
                .server
                .iter()
                .map(|(d, q)| format!("{}: {}/{}", server_name(*d), q.popped, q.sent.len()))
                .collect();
            self.model.fail(format!(
                "stall: after a calm spell of {CALM_TIME}, popped/pushed: client {cp}/{cs}, server {}",
                server.join(", ")
            ));
        }
    }
}

/// Whether the server has a live connection (the client's: there is one slot).
fn live(server: &mut TcpShmServer<SimConf>) -> bool {
    let mut live = false;
    server.tcp_group(0).for_each_connection(|_| live = true);
    live
}

fn name(side: usize) -> &'static str {
    if side == C {
        "client"
    } else {
        "server"
    }
}

mod tests;
