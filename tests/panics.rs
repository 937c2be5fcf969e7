//! A handler that panics, caught by the application, which polls again: the
//! connection goes on as after a crash at that point, with nothing lost and
//! nothing handled twice.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use support::{unique, Event, Recorder, ServerThread, TestConf, GREETING};
use tcpshm::{ClientHandler, Connection, Msg, TcpShmClient};

/// Handles the greeting: the first time it pops it (and replies, if
/// `reply`) and then panics; every time, it counts it.
#[derive(Default)]
struct Panicky {
    reply: bool,
    seen: usize,
}

impl ClientHandler<TestConf> for Panicky {
    fn on_server_msg(&mut self, conn: &mut Connection<TestConf>, msg: Msg<'_>) {
        assert_eq!(msg.msg_type(), GREETING);
        self.seen += 1;
        if self.reply {
            let mut slot = conn.alloc(4).expect("room for the reply");
            slot.copy_from_slice(b"ack!");
            slot.pop_received();
            slot.push(7);
        } else {
            conn.pop();
        }
        if self.seen == 1 {
            panic!("the handler fails once");
        }
    }

    fn on_login_success(&mut self, _: &tcpshm::LoginRspMsg<TestConf>) -> Option<i64> {
        Some(support::now_ns())
    }
}

/// Polls until the handler has seen the greeting `n` times, catching its panics.
fn poll_seen(client: &mut TcpShmClient<TestConf>, h: &mut Panicky, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while h.seen < n {
        assert!(std::time::Instant::now() < deadline, "the greeting came {} times, not {n}", h.seen);
        let _ = catch_unwind(AssertUnwindSafe(|| {
            client.poll_tcp(support::now_ns(), h);
            client.poll_shm(h);
        }));
    }
}

/// A greeting server and a client of it logged in over TCP or shm; the
/// directories live as long as the pair.
struct Pair {
    server: ServerThread,
    client: TcpShmClient<TestConf>,
    names: (String, String),
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Pair {
    fn start(shm: bool, tag: &str, h: &mut Panicky) -> Pair {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let names = (unique(&format!("{tag}s")), unique(&format!("{tag}{}", if shm { "m" } else { "t" })));
        let server =
            ServerThread::start::<TestConf>(&names.0, dirs.0.path(), Recorder { greet: true, ..Default::default() });
        let mut client = TcpShmClient::<TestConf>::new(&names.1, dirs.1.path()).unwrap();
        client.connect(shm, server.addr.as_str(), 0, h).unwrap();
        Pair { server, client, names, _dirs: dirs }
    }

    /// Polls a while without waiting for anything, catching nothing.
    fn idle(&mut self, h: &mut Panicky) {
        for _ in 0..100 {
            self.client.poll_tcp(support::now_ns(), h);
            self.client.poll_shm(h);
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let (srv, cli) = &self.names;
        for (a, b) in [(cli, srv), (srv, cli)] {
            let _ = std::fs::remove_file(tcpshm::shm::shm_path(a, b));
        }
    }
}

#[test]
fn a_pop_the_panic_cut_short_is_forgotten_and_the_message_comes_again() {
    for shm in [false, true] {
        let mut h = Panicky::default();
        let mut p = Pair::start(shm, "pop", &mut h);
        poll_seen(&mut p.client, &mut h, 2);
        // Handled once for good: a later poll brings nothing, and over TCP
        // the ack is one message's.
        p.idle(&mut h);
        assert_eq!(h.seen, 2, "shm: {shm}");
        if !shm {
            assert_eq!(p.client.connection().seqs().map(|s| s.0), Some(1), "the ack counts one pop");
        }
    }
}

#[test]
fn a_reply_pushed_before_the_panic_is_sent_once_and_the_message_not_again() {
    for shm in [false, true] {
        let mut h = Panicky { reply: true, seen: 0 };
        let mut p = Pair::start(shm, "reply", &mut h);
        poll_seen(&mut p.client, &mut h, 1);
        // Over TCP the reply made the pop durable: the message is consumed.
        // Over shm the reply was held, never published: it is dropped, and
        // the message comes again (handled without a panic this time).
        let want = if shm { 2 } else { 1 };
        poll_seen(&mut p.client, &mut h, want);
        let replies = |e: &[Event]| e.iter().filter(|e| matches!(e, Event::Msg(_, 7, _))).count();
        p.server.wait_for("the reply", |e| replies(e) == 1);
        p.idle(&mut h);
        assert_eq!(h.seen, want, "shm: {shm}");
        // A marker sent now arrives after any second reply: one reply in all.
        assert!(p.client.connection().send(8, b"end"));
        p.server.wait_for("the marker", |e| e.iter().any(|e| matches!(e, Event::Msg(_, 8, _))));
        assert_eq!(replies(&p.server.events()), 1, "shm: {shm}");
    }
}
