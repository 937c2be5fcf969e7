//! Every way the stored sequence numbers can disagree after an operator or
//! a disk got at the queue files: one side's file deleted or replaced by an
//! older copy is a sequence mismatch on both sides, with the six numbers,
//! and no connection; a truncated file is a corrupt file, reported as such
//! (our files carry their size, so truncation is never mistaken for new
//! numbers). `recovery.rs` covers a deleted client file and a new server name.

mod support;

use std::path::{Path, PathBuf};

use support::{unique, ClientRec, Event, Recorder, ServerThread, TestConf};
use tcpshm::ptcp::ptcp_path;
use tcpshm::{ConnectError, Error, SeqMismatch, TcpShmClient};

const CLIENT: &str = "mmc";

struct Setup {
    sdir: tempfile::TempDir,
    cdir: tempfile::TempDir,
    srv: String,
}

impl Setup {
    fn server(&self) -> ServerThread {
        ServerThread::start::<TestConf>(&self.srv, self.sdir.path(), Recorder { echo: true, ..Default::default() })
    }

    fn client_file(&self) -> PathBuf {
        ptcp_path(self.cdir.path(), CLIENT, &self.srv)
    }

    fn server_file(&self) -> PathBuf {
        ptcp_path(self.sdir.path(), &self.srv, CLIENT)
    }

    /// Connects a fresh client, exchanges `n` echoed messages, disconnects.
    fn session(&self, server: &ServerThread, n: usize) {
        let mut client = TcpShmClient::<TestConf>::new(CLIENT, self.cdir.path()).unwrap();
        let mut h = ClientRec::default();
        client.connect(false, server.addr.as_str(), 0, &mut h).unwrap();
        for i in 0..n {
            assert!(client.connection().send(7, &(i as u64)));
        }
        support::poll_until(&mut client, &mut h, "the echoes", |_, h| h.msgs.len() == n);
        drop(client);
        server.wait_for("the disconnect", |e| e.iter().any(|e| matches!(e, Event::Disconnected(..))));
    }

    /// A new client's login, which must fail.
    fn connect_err(&self, server: &ServerThread) -> ConnectError {
        let mut client = TcpShmClient::<TestConf>::new(CLIENT, self.cdir.path()).unwrap();
        let mut h = ClientRec::default();
        let err = client.connect(false, server.addr.as_str(), 0, &mut h).expect_err("the login must fail");
        assert!(client.connection().is_closed(), "no connection is made");
        if let ConnectError::SeqMismatch(m) = &err {
            assert_eq!(h.mismatch, Some(*m), "the client's callback has the six numbers");
        }
        err
    }
}

fn setup() -> Setup {
    let s = Setup { sdir: tempfile::tempdir().unwrap(), cdir: tempfile::tempdir().unwrap(), srv: unique("mms") };
    let server = s.server();
    s.session(&server, 5);
    s
}

/// The client's mismatch, and the server's, which mirrors it.
fn mismatch_on_both_sides(s: &Setup, server: &ServerThread) -> SeqMismatch {
    let logons = || server.events().iter().filter(|e| matches!(e, Event::Logon(_))).count();
    let logons_before = logons();
    let m = match s.connect_err(server) {
        ConnectError::SeqMismatch(m) => m,
        e => panic!("expected a sequence mismatch, got {e}"),
    };
    assert!(!m.is_consistent(), "{m}");
    server.wait_for("the server's mismatch", |e| e.iter().any(|e| matches!(e, Event::Mismatch(..))));
    let theirs = server.events().into_iter().find_map(|e| if let Event::Mismatch(_, m) = e { Some(m) } else { None });
    let t = theirs.unwrap();
    assert_eq!(
        (t.local_ack_seq, t.local_seq_start, t.local_seq_end, t.remote_ack_seq, t.remote_seq_start, t.remote_seq_end),
        (m.remote_ack_seq, m.remote_seq_start, m.remote_seq_end, m.local_ack_seq, m.local_seq_start, m.local_seq_end),
        "the server sees the same six numbers from its side"
    );
    assert_eq!(logons(), logons_before, "no logon");
    m
}

fn copy(from: &Path, to: &Path) {
    // A new file renamed into place, as a restore from backup would be.
    let tmp = to.with_extension("restore");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn deleted_server_file_is_a_mismatch_on_both_sides() {
    let s = setup();
    std::fs::remove_file(s.server_file()).unwrap();
    let server = s.server();
    let m = mismatch_on_both_sides(&s, &server);
    assert_eq!((m.remote_ack_seq, m.remote_seq_start, m.remote_seq_end), (0, 0, 0), "the server starts at 0");
    assert_eq!(m.local_ack_seq, 5, "the client had 5 echoes");
}

#[test]
fn older_client_file_is_a_mismatch_on_both_sides() {
    let s = setup();
    let backup = s.cdir.path().join("backup");
    std::fs::copy(s.client_file(), &backup).unwrap();
    let server = s.server();
    s.session(&server, 3);
    copy(&backup, &s.client_file());
    let m = mismatch_on_both_sides(&s, &server);
    assert_eq!((m.local_ack_seq, m.local_seq_end), (5, 5), "the backup's numbers");
    assert_eq!(m.remote_ack_seq, 8, "the server has consumed 8");
}

#[test]
fn older_server_file_is_a_mismatch_on_both_sides() {
    let s = setup();
    let backup = s.sdir.path().join("backup");
    std::fs::copy(s.server_file(), &backup).unwrap();
    let server = s.server();
    s.session(&server, 3);
    drop(server);
    copy(&backup, &s.server_file());
    let server = s.server();
    let m = mismatch_on_both_sides(&s, &server);
    assert_eq!((m.remote_ack_seq, m.remote_seq_end), (5, 5), "the backup's numbers");
    assert_eq!(m.local_ack_seq, 8, "the client has consumed 8");
}

#[test]
fn truncated_client_file_is_reported_as_corrupt() {
    let s = setup();
    let len = std::fs::metadata(s.client_file()).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(s.client_file()).unwrap().set_len(len / 2).unwrap();
    let server = s.server();
    match s.connect_err(&server) {
        ConnectError::System(Error::FileCorrupt { path, .. }) => assert_eq!(path, s.client_file()),
        e => panic!("expected a corrupt file, got {e}"),
    }
    assert!(server.events().is_empty(), "the server never heard of it: {:?}", server.events());
}

#[test]
fn truncated_server_file_is_reported_as_corrupt_and_the_login_refused() {
    let s = setup();
    let len = std::fs::metadata(s.server_file()).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(s.server_file()).unwrap().set_len(len - 8).unwrap();
    let server = s.server();
    match s.connect_err(&server) {
        ConnectError::Rejected(msg) => assert_eq!(msg, "System error"),
        e => panic!("expected a rejection, got {e}"),
    }
    server.wait_for("the file error", |e| e.contains(&Event::FileError(CLIENT.into())));
}
