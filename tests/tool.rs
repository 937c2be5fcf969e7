//! The operator's tool `tcpshm-ptcp`, run as a process over files a real
//! client and server made (TCP queue files, `.lastserver` files, /dev/shm
//! objects) and over broken ones: what it prints, its exit status, and that
//! a reset is the manual fix of a sequence mismatch.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{poll_until, unique, ClientRec, Event, Recorder, ServerThread, TestConf};
use tcpshm::ptcp::{lastserver_path, ptcp_path};
use tcpshm::shm::shm_path;
use tcpshm::{Conf, ConnectError, ServerConf, TcpShmClient};

/// What a run of the tool did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the tool with `args`, feeding `stdin`.
fn tool_with_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpshm-ptcp"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The tool may exit without reading (a usage error): ignore a closed pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    run
}

fn tool(args: &[&str]) -> Run {
    tool_with_stdin(args, "")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts a failure with one line on stderr naming `path` and saying `what`.
fn assert_fails(run: &Run, path: &Path, what: &str) {
    assert_eq!(run.code, Some(1), "{run:?}");
    let path = path.display().to_string();
    let one_line = |l: &str| l.starts_with("tcpshm-ptcp: ") && l.contains(&path) && l.contains(what);
    assert!(run.stderr.lines().any(one_line), "{what}: {run:?}");
}

/// The line of `text` that starts with `first` (a table row), split into cells.
fn row(text: &str, first: &str) -> Vec<String> {
    let line = text.lines().find(|l| l.starts_with(first)).unwrap_or_else(|| panic!("no row {first} in\n{text}"));
    line.split_whitespace().map(str::to_owned).collect()
}

/// A pair that exchanged `n` echoes and then, the server gone, queued two
/// more messages of type 9 on the client: its files are left in the dirs.
fn pair_with_history<C: ServerConf>(client: &str, server: &str, sdir: &Path, cdir: &Path, n: u64) {
    let mut c = TcpShmClient::<C>::new(client, cdir).unwrap();
    let mut h = ClientRec::default();
    {
        let srv = ServerThread::start::<C>(server, sdir, Recorder { echo: true, ..Default::default() });
        c.connect(false, srv.addr.as_str(), Default::default(), &mut h).unwrap();
        for i in 0..n {
            assert!(c.connection().send(7, &i));
            poll_until(&mut c, &mut h, "an echo", |_, h| h.msgs.len() as u64 == i + 1);
        }
    }
    poll_until(&mut c, &mut h, "the disconnect", |_, h| h.disconnected.is_some());
    assert!(c.connection().send(9, &100u64));
    assert!(c.connection().send(9, &101u64));
}

#[test]
fn list_and_show_the_files_of_a_client_and_a_server() {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let srv = unique("tools");
    pair_with_history::<TestConf>("tl", &srv, sdir.path(), cdir.path(), 3);

    let run = tool(&["list", s(cdir.path())]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("FILE "), "{}", run.stdout);
    let file = format!("tl_{srv}.ptcp");
    // FILE LOCAL REMOTE SEQ_START SEQ_END ACK MSGS USED FREE DURABILITY
    assert_eq!(row(&run.stdout, &file), [&file, "tl", &srv, "3", "5", "3", "2", "32", "1968", "never"]);
    assert_eq!(row(&run.stdout, "tl.lastserver"), ["tl.lastserver", "tl", &srv]);

    let run = tool(&["show", s(&ptcp_path(cdir.path(), "tl", &srv))]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("seq_start 3  seq_end 5  ack 3  messages 2  used 32 bytes  free 1968 bytes"));
    assert_eq!(row(&run.stdout, "SEQ"), ["SEQ", "TYPE", "SIZE", "ACK", "OFFSET"]);
    let msgs: Vec<Vec<String>> =
        run.stdout.lines().skip_while(|l| !l.starts_with("SEQ")).skip(1).map(|l| row(l, "")).collect();
    assert_eq!(msgs, [["3", "9", "16", "3", "48"], ["4", "9", "16", "3", "64"]]);

    // The server's side: its echoes, whatever the client acked of them.
    let run = tool(&["list", s(sdir.path())]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let file = format!("{srv}_tl.ptcp");
    let r = row(&run.stdout, &file);
    assert_eq!(r[1..3], [srv.as_str(), "tl"]);
    assert_eq!((r[4].as_str(), r[5].as_str()), ("3", "3"), "seq_end and ack: {r:?}");
    assert!(run.stdout.contains("no valid .lastserver files"));
}

/// Another configuration: queue size, name size and byte order differ.
struct BigEndianConf;

impl Conf for BigEndianConf {
    const TO_LITTLE_ENDIAN: bool = false;
    const NAME_SIZE: usize = 32;
    const TCP_QUEUE_SIZE: usize = 4096;
    const CONNECTION_TIMEOUT: i64 = TestConf::CONNECTION_TIMEOUT;
    const HEARTBEAT_INTERVAL: i64 = TestConf::HEARTBEAT_INTERVAL;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

impl ServerConf for BigEndianConf {
    const NEW_CONNECTION_TIMEOUT: i64 = TestConf::NEW_CONNECTION_TIMEOUT;
}

#[test]
fn files_of_any_configuration_are_read_and_foreign_names_are_flagged() {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let srv = unique("toolbe");
    pair_with_history::<BigEndianConf>("ab", &srv, sdir.path(), cdir.path(), 2);
    let file = format!("ab_{srv}.ptcp");

    let run = tool(&["show", s(&cdir.path().join(&file))]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("queue of 4096 bytes, NAME_SIZE 32, big-endian headers"), "{}", run.stdout);
    assert!(run.stdout.contains("seq_start 2  seq_end 4  ack 2  messages 2"), "{}", run.stdout);
    assert!(run.stdout.lines().any(|l| row(l, "") == ["2", "9", "16", "2", "32"]), "{}", run.stdout);

    let run = tool(&["list", s(cdir.path())]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let r = row(&run.stdout, &file);
    assert_eq!(r[..9], [&file, "ab", &srv, "2", "4", "2", "2", "32", "4064"]);
    assert_eq!(row(&run.stdout, "ab.lastserver")[..3], ["ab.lastserver", "ab", &srv]);

    // A file whose name does not split into two names (an older version's,
    // whose names could hold `_`): read, and its names flagged unknown.
    let alone = tempfile::tempdir().unwrap();
    let foreign = format!("a_b_{srv}.ptcp");
    std::fs::copy(cdir.path().join(&file), alone.path().join(&foreign)).unwrap();
    let run = tool(&["list", s(alone.path())]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(row(&run.stdout, &foreign)[1..3], ["?", "?"]);
    assert!(run.stdout.contains("name is not <local>_<remote> of two valid names"), "{}", run.stdout);
}

/// A valid queue file with two queued messages, copied into `dir` as `name`.
fn valid_file(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let srv = unique("toolv");
    pair_with_history::<TestConf>("tv", &srv, sdir.path(), cdir.path(), 1);
    let bytes = std::fs::read(ptcp_path(cdir.path(), "tv", &srv)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
fn broken_files_are_reported_by_name_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bytes) = valid_file(dir.path(), "ok_peer.ptcp");
    let random = support::random_bytes(bytes.len(), 0x2545_f491_4f6c_dd1d);
    let with = |off: usize, patch: &[u8]| {
        let mut b = bytes.clone();
        b[off..off + patch.len()].copy_from_slice(patch);
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("magic_x.ptcp", with(0, b"XCPSHMPQ"), "not a tcpshm queue file (bad magic)"),
        ("zero_x.ptcp", vec![0; bytes.len()], "bad magic"),
        ("random_x.ptcp", random, "bad magic"),
        ("empty_x.ptcp", vec![], "truncated: 0 bytes"),
        ("short_x.ptcp", bytes[..40].to_vec(), "truncated: 40 bytes"),
        ("cut_x.ptcp", bytes[..1000].to_vec(), "truncated: file has 1000 bytes"),
        ("version_x.ptcp", with(8, &7u32.to_ne_bytes()), "queue file version 7"),
        ("qsize_x.ptcp", with(12, &13u32.to_ne_bytes()), "impossible queue size 13"),
        ("indices_x.ptcp", with(24, &9999u32.to_ne_bytes()), "impossible indices read"),
        ("ack_x.ptcp", with(40, &0u32.to_ne_bytes()), "message 1 carries ack 1 beyond the file's ack 0"),
        // The first queued message (at block 2 after the header) claims to
        // run past the queue's end.
        ("walk_x.ptcp", with(64 + 16, &4000u16.to_le_bytes()), "message size invalid"),
    ];
    for (name, content, what) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let run = tool(&["show", s(&path)]);
        assert_fails(&run, &path, what);
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    let bad_ls = lastserver_path(dir.path(), "ok");
    std::fs::write(&bad_ls, b"short").unwrap();
    let mut slashed = vec![0u8; 16];
    slashed[..3].copy_from_slice(b"a/b");
    std::fs::write(lastserver_path(dir.path(), "other"), &slashed).unwrap();

    // list shows what is valid and names every broken file.
    let run = tool(&["list", s(dir.path())]);
    for (name, _, what) in &cases {
        assert_fails(&run, &dir.path().join(name), what);
    }
    assert_fails(&run, &bad_ls, "has 5 bytes, the NAME_SIZE of the client's queue files is 16");
    assert_fails(&run, &lastserver_path(dir.path(), "other"), "does not hold a valid server name");
    assert_eq!(run.stderr.lines().count(), cases.len() + 2, "{run:?}");
    assert_eq!(row(&run.stdout, "ok_peer.ptcp")[..3], ["ok_peer.ptcp", "ok", "peer"]);

    // reset writes only files of ours; it may empty one whose ring is broken.
    assert_fails(
        &tool(&["reset", "--yes", s(&dir.path().join("zero_x.ptcp"))]),
        &dir.path().join("zero_x.ptcp"),
        "bad magic",
    );
    assert_eq!(std::fs::read(dir.path().join("zero_x.ptcp")).unwrap(), vec![0; bytes.len()]);
    let walk = dir.path().join("walk_x.ptcp");
    assert_eq!(tool(&["reset", "--yes", s(&walk)]).code, Some(0));
    assert!(tool(&["show", s(&walk)]).stdout.contains("no messages queued"));

    // Missing files and directories.
    let missing = dir.path().join("nope.ptcp");
    assert_fails(&tool(&["show", s(&missing)]), &missing, "No such file");
    assert_fails(&tool(&["reset", "--yes", s(&missing)]), &missing, "No such file");
    let nodir = dir.path().join("nodir");
    assert_fails(&tool(&["list", s(&nodir)]), &nodir, "No such file");
    assert_eq!(std::fs::read(&good).unwrap(), bytes, "nothing above wrote the good file");
}

#[test]
fn bad_usage_prints_the_usage() {
    for args in
        [&[][..], &["frob", "x"], &["show"], &["list", "a", "b"], &["show", "--yes", "f"], &["reset", "-f", "x"]]
    {
        let run = tool(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains("usage: tcpshm-ptcp list DIR"), "{args:?}: {run:?}");
    }
    let run = tool(&["--help"]);
    assert_eq!(run.code, Some(0));
    assert!(run.stdout.starts_with("usage: tcpshm-ptcp list DIR"));
}

#[test]
fn reset_asks_first_and_no_leaves_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = valid_file(dir.path(), "c_s.ptcp");
    for answer in ["n\n", "", "whatever\n"] {
        let run = tool_with_stdin(&["reset", s(&path)], answer);
        assert_fails(&run, &path, "not reset");
        assert!(run.stdout.contains("2 message(s) queued, seq_start 1 seq_end 3 ack 1"), "{run:?}");
        assert!(run.stdout.contains("[y/N]"), "{run:?}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "answer {answer:?}");
    }
    let run = tool_with_stdin(&["reset", s(&path)], "y\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("reset: seq_start 0 seq_end 0 ack 0"), "{run:?}");
    assert!(run.stdout.contains("Reset the peer's file too: s_c.ptcp"), "{run:?}");
    let after = std::fs::read(&path).unwrap();
    assert_eq!(after.len(), bytes.len());
    assert_eq!(after[..24], bytes[..24], "magic, sizes and durability kept");
    assert!(after[24..44].iter().all(|&b| b == 0), "indices and ack zeroed");
}

#[test]
fn reset_of_both_sides_fixes_a_sequence_mismatch() {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let srv = unique("toolm");
    pair_with_history::<TestConf>("tm", &srv, sdir.path(), cdir.path(), 4);
    // The client loses its queue file: its numbers restart at 0 while the
    // server has consumed 4 of its messages.
    let cfile = ptcp_path(cdir.path(), "tm", &srv);
    let sfile = ptcp_path(sdir.path(), &srv, "tm");
    std::fs::remove_file(&cfile).unwrap();
    {
        let server = ServerThread::start::<TestConf>(&srv, sdir.path(), Recorder::default());
        let mut client = TcpShmClient::<TestConf>::new("tm", cdir.path()).unwrap();
        let r = client.connect(false, server.addr.as_str(), 0, &mut ClientRec::default());
        assert!(matches!(r, Err(ConnectError::SeqMismatch(_))), "{r:?}");
    }
    // The manual fix, both processes stopped: reset both files.
    for file in [&cfile, &sfile] {
        let run = tool(&["reset", "--yes", s(file)]);
        assert_eq!(run.code, Some(0), "{run:?}");
        let run = tool(&["show", s(file)]);
        assert!(run.stdout.contains("seq_start 0  seq_end 0  ack 0  messages 0"), "{run:?}");
        assert!(run.stdout.contains("no messages queued"), "{run:?}");
    }
    let server = ServerThread::start::<TestConf>(&srv, sdir.path(), Recorder { echo: true, ..Default::default() });
    let mut client = TcpShmClient::<TestConf>::new("tm", cdir.path()).unwrap();
    let mut h = ClientRec::default();
    client.connect(false, server.addr.as_str(), 0, &mut h).unwrap();
    assert_eq!(h.login_rsp, Some((0, 0, 0)));
    assert!(client.connection().send(5, &42u64));
    poll_until(&mut client, &mut h, "the echo", |_, h| h.msgs.len() == 1);
    server.wait_for("the logon", |e| e.contains(&Event::Logon("tm".into())));
}

/// Removes a test's /dev/shm objects, whatever happens.
struct ShmObjects(String, String);

impl Drop for ShmObjects {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0, &self.1));
        let _ = std::fs::remove_file(shm_path(&self.1, &self.0));
    }
}

#[test]
fn shm_shows_the_indices_and_depth_of_a_real_queue() {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cname, sname) = (unique("toolshc"), unique("toolshs"));
    let _cleanup = ShmObjects(cname.clone(), sname.clone());
    let mut client = TcpShmClient::<TestConf>::new(&cname, cdir.path()).unwrap();
    let mut h = ClientRec::default();
    {
        let server =
            ServerThread::start::<TestConf>(&sname, sdir.path(), Recorder { echo: true, ..Default::default() });
        client.connect(true, server.addr.as_str(), 0, &mut h).unwrap();
        for i in 0..2u64 {
            assert!(client.connection().send(3, &i));
        }
        poll_until(&mut client, &mut h, "the echoes", |_, h| h.msgs.len() == 2);
    }
    poll_until(&mut client, &mut h, "the disconnect", |_, h| h.disconnected.is_some());
    // Waiting for a server that is gone: 3 messages of one block each.
    for i in 0..3u64 {
        assert!(client.connection().send(4, &i));
    }
    let name = format!("{cname}_{sname}.shm");
    let run = tool(&["shm", &name]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.lines().next(), Some(format!("/dev/shm/{name}").as_str()));
    assert_eq!(row(&run.stdout, "queue size")[2..], ["4096", "bytes", "(64", "blocks", "of", "64)"]);
    assert_eq!(row(&run.stdout, "write_idx"), ["write_idx", "5"]);
    assert_eq!(row(&run.stdout, "read_idx"), ["read_idx", "2"]);
    assert_eq!(row(&run.stdout, "depth"), ["depth", "3", "blocks,", "192", "bytes"]);
    assert_eq!(row(&run.stdout, "messages"), ["messages", "3", "waiting"]);
    // The other direction by path: drained, its producer had consumed 2.
    let back = shm_path(&sname, &cname);
    let run = tool(&["shm", s(&back)]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(row(&run.stdout, "write_idx"), ["write_idx", "2"]);
    assert_eq!(row(&run.stdout, "consumed")[..2], ["consumed", "2"]);
    assert_eq!(row(&run.stdout, "messages"), ["messages", "0", "waiting"]);

    // Broken copies of the object.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(shm_path(&cname, &sname)).unwrap();
    let q = bytes.len() - 256;
    let mut broken = vec![("size.shm", bytes[..1000].to_vec(), "has 1000 bytes")];
    let mut b = bytes.clone();
    b[q..q + 4].copy_from_slice(&1000u32.to_ne_bytes());
    broken.push(("indices.shm", b, "impossible indices: write_idx 1000"));
    let mut b = bytes.clone();
    b[2 * 64..2 * 64 + 2].copy_from_slice(&3u16.to_ne_bytes());
    broken.push(("msg.shm", b, "the message at index 2 has size 3"));
    for (name, content, what) in broken {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        assert_fails(&tool(&["shm", s(&path)]), &path, what);
    }
    let missing = format!("{cname}_nobody.shm");
    assert_fails(&tool(&["shm", &missing]), &Path::new("/dev/shm").join(&missing), "No such file");
}
