//! Interoperability with the C++ tcpshm, against bytes captured from its own
//! echo pair (tests/data, see its README): our encoder produces its login
//! frames, our decoder reads every frame of its sessions, and our server and
//! client, replayed against its recorded peer over real sockets, put the same
//! bytes on the wire (padding aside: the C++ side leaves garbage there).

#[path = "../examples/common/echo.rs"]
mod echo;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tcpshm::msg::LoginLayout;
use tcpshm::{
    ClientHandler, Conf, Connection, LoginMsg, LoginRspMsg, LoginStatus, Msg, MsgHeader, ServerConf, TcpShmClient,
    TcpShmServer,
};
use zerocopy::FromBytes;

/// The capture's configuration (NameSize 16, 1 MiB shm queue, little
/// endian, one-byte login data).
struct GoldConf;
impl Conf for GoldConf {
    const SHM_QUEUE_SIZE: usize = 1 << 20;
    const TCP_QUEUE_SIZE: usize = 3000;
    const CONNECTION_TIMEOUT: i64 = 10_000_000_000;
    const HEARTBEAT_INTERVAL: i64 = 3_000_000_000;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}
impl ServerConf for GoldConf {
    const NEW_CONNECTION_TIMEOUT: i64 = 3_000_000_000;
}

const PINGPONG_C2S: &[u8] = include_bytes!("data/tcp_pingpong_c2s.bin");
const PINGPONG_S2C: &[u8] = include_bytes!("data/tcp_pingpong_s2c.bin");
const SHM_LOGIN_C2S: &[u8] = include_bytes!("data/shm_login_c2s.bin");
const SHM_LOGIN_S2C: &[u8] = include_bytes!("data/shm_login_s2c.bin");
const RESUME_C2S: &[u8] = include_bytes!("data/tcp_resume_c2s_head.bin");
const RESUME_S2C: &[u8] = include_bytes!("data/tcp_resume_s2c_head.bin");
const RESUME_LASTSERVER: &[u8] = include_bytes!("data/resume.lastserver");

fn header(frame: &[u8]) -> MsgHeader {
    MsgHeader::read_from_prefix(frame).unwrap().0.swap_wire::<GoldConf>()
}

/// Splits a byte stream into whole frames (a cut tail is left out).
fn frames(mut s: &[u8]) -> Vec<&[u8]> {
    let mut out = vec![];
    while s.len() >= 8 {
        let len = header(s).padded_size();
        assert!(len >= 8, "frame size below the header");
        if s.len() < len {
            break;
        }
        out.push(&s[..len]);
        s = &s[len..];
    }
    out
}

/// The numbers an application frame carries (type = count of i32).
fn numbers(frame: &[u8]) -> Vec<i32> {
    let h = header(frame);
    assert!((1..=4).contains(&h.msg_type), "type {}", h.msg_type);
    assert_eq!(h.size as usize, 8 + 4 * h.msg_type as usize);
    frame[8..h.size as usize].chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Offsets of a login frame that carry meaning: header, seqs, user data,
/// use_shm, and each name up to its NUL.
fn login_meaningful(frame: &[u8]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..18).collect();
    for start in [18, 34] {
        let end = frame[start..start + 16].iter().position(|&b| b == 0).unwrap_or(15);
        idx.extend(start..=start + end);
    }
    idx
}

/// As `login_meaningful` for a response: header, seqs, status, server name
/// to its NUL, first byte of error_msg (the C++ server leaves user_data unset).
fn rsp_meaningful(frame: &[u8]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..16).collect();
    idx.push(17);
    let end = frame[18..34].iter().position(|&b| b == 0).unwrap_or(15);
    idx.extend(18..=18 + end);
    idx.push(34);
    idx
}

fn assert_same_at(ours: &[u8], theirs: &[u8], idx: &[usize], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for &i in idx {
        assert_eq!(ours[i], theirs[i], "{what}: byte {i}\n ours   {ours:02x?}\n theirs {theirs:02x?}");
    }
}

/// Application frames compare on their header and body; padding is ignored.
fn assert_same_frame(ours: &[u8], theirs: &[u8], what: &str) {
    let size = header(theirs).size as usize;
    assert_eq!(ours.len(), theirs.len(), "{what}: padded length");
    assert_eq!(&ours[..size], &theirs[..size], "{what}");
    assert!(ours[size..].iter().all(|&b| b == 0), "{what}: our padding is zeroed");
}

#[test]
fn encoder_produces_the_cpp_login_frames() {
    assert_eq!(LoginLayout::<GoldConf>::LOGIN_FRAME, 56);
    assert_eq!(LoginLayout::<GoldConf>::RSP_FRAME, 72);
    type Case<'a> = (&'a [u8], u32, u32, u32, bool, &'a str, &'a str);
    let cases: [Case; 3] = [
        (PINGPONG_C2S, 0, 0, 0, false, "gold", ""),
        (SHM_LOGIN_C2S, 0, 0, 0, true, "goldshm", ""),
        (RESUME_C2S, 3091, 3091, 3190, false, "resume", "server"),
    ];
    for (capture, ack, start, end, use_shm, name, last) in cases {
        let ours = LoginMsg::<GoldConf> {
            ack_seq: ack,
            client_seq_start: start,
            client_seq_end: end,
            user_data: 0,
            use_shm,
            client_name: name.into(),
            last_server_name: last.into(),
        }
        .encode();
        let theirs = &capture[..56];
        assert_same_at(&ours, theirs, &login_meaningful(theirs), name);
        assert!(ours[50..].iter().all(|&b| b == 0));
    }
    let rsps: [(&[u8], u32, u32, u32); 3] =
        [(PINGPONG_S2C, 0, 0, 0), (SHM_LOGIN_S2C, 0, 0, 0), (RESUME_S2C, 3190, 3091, 3190)];
    for (capture, ack, start, end) in rsps {
        let mut rsp = LoginRspMsg::<GoldConf>::new("server", LoginStatus::Ok);
        (rsp.ack_seq, rsp.server_seq_start, rsp.server_seq_end) = (ack, start, end);
        let ours = rsp.encode();
        let theirs = &capture[..72];
        assert_same_at(&ours, theirs, &rsp_meaningful(theirs), "login response");
    }
}

#[test]
fn decoder_reads_every_frame_of_the_cpp_sessions() {
    // Ping-pong: a login, 15 messages and their 15 echoes.
    let (c2s, s2c) = (frames(PINGPONG_C2S), frames(PINGPONG_S2C));
    assert_eq!((c2s.len(), s2c.len()), (16, 16));
    let login = LoginMsg::<GoldConf>::decode(c2s[0]).unwrap();
    assert_eq!((login.client_name.as_str(), login.last_server_name.as_str(), login.use_shm), ("gold", "", false));
    let rsp = LoginRspMsg::<GoldConf>::decode(s2c[0]).unwrap();
    assert_eq!((rsp.status, rsp.server_name.as_str(), rsp.error_msg.as_str()), (LoginStatus::Ok, "server", ""));
    let mut next = 0;
    for i in 1..16 {
        let sent = numbers(c2s[i]);
        assert_eq!(sent, numbers(s2c[i]), "echo {i}");
        assert!(sent.iter().all(|&v| {
            next += 1;
            v == next - 1
        }));
        // Each side's ack counts the other's messages consumed so far.
        assert_eq!(header(c2s[i]).ack_seq, i as u32 - 1);
        assert_eq!(header(s2c[i]).ack_seq, i as u32);
    }

    // Shm mode: only the login crosses TCP.
    let login = LoginMsg::<GoldConf>::decode(SHM_LOGIN_C2S).unwrap();
    assert!(login.use_shm);
    assert_eq!(login.client_name, "goldshm");
    let rsp = LoginRspMsg::<GoldConf>::decode(SHM_LOGIN_S2C).unwrap();
    assert_eq!((rsp.status, rsp.server_name.as_str()), (LoginStatus::Ok, "server"));

    // The resume after SIGKILL, cut mid-frame at 4096 bytes.
    let (c2s, s2c) = (frames(RESUME_C2S), frames(RESUME_S2C));
    let login = LoginMsg::<GoldConf>::decode(c2s[0]).unwrap();
    assert_eq!((login.ack_seq, login.client_seq_start, login.client_seq_end), (3091, 3091, 3190));
    assert_eq!((login.client_name.as_str(), login.last_server_name.as_str()), ("resume", "server"));
    let rsp = LoginRspMsg::<GoldConf>::decode(s2c[0]).unwrap();
    assert_eq!(
        (rsp.ack_seq, rsp.server_seq_start, rsp.server_seq_end, rsp.status),
        (3190, 3091, 3190, LoginStatus::Ok)
    );
    for stream in [&c2s[1..], &s2c[1..]] {
        assert!(stream.len() > 100);
        let mut expect = numbers(stream[0])[0];
        for f in stream {
            for v in numbers(f) {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
    }
    // The server resends from the client's ack 3091, each message with the
    // ack of its push time; the client's new messages count up from 3091.
    assert_eq!(header(s2c[1]).ack_seq, 3092);
    assert_eq!(header(c2s[1]).ack_seq, 3091);
    let tail = &RESUME_S2C[s2c.iter().map(|f| f.len()).sum::<usize>()..];
    assert!(!tail.is_empty() && tail.len() < header(tail).padded_size(), "the capture ends mid-frame");

    // The client's .lastserver: NAME_SIZE bytes, NUL-padded.
    assert_eq!(RESUME_LASTSERVER.len(), GoldConf::NAME_SIZE);
    assert_eq!(&RESUME_LASTSERVER[..7], b"server\0");
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut f = vec![0u8; 8];
    s.read_exact(&mut f).unwrap();
    let len = header(&f).padded_size();
    f.resize(len, 0);
    s.read_exact(&mut f[8..]).unwrap();
    f
}

#[test]
fn our_server_answers_the_cpp_client_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TcpShmServer::<GoldConf>::new("server", dir.path()).unwrap();
    server.start("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut h = echo::EchoServerHandler { quiet: true };
            while !stop.load(Ordering::Relaxed) {
                server.poll_ctl(echo::now_ns(), &mut h);
                server.poll_tcp(echo::now_ns(), 0, &mut h);
            }
        });
        let (c2s, s2c) = (frames(PINGPONG_C2S), frames(PINGPONG_S2C));
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for i in 0..16 {
            // The C++ client waits for each echo before it sends the next.
            sock.write_all(c2s[i]).unwrap();
            let ours = read_frame(&mut sock);
            if i == 0 {
                assert_same_at(&ours, s2c[0], &rsp_meaningful(s2c[0]), "login response");
            } else {
                assert_same_frame(&ours, s2c[i], &format!("echo {i}"));
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

/// Sends the captured client's messages one by one, awaiting each echo.
struct Replay {
    next: usize,
    echoed: usize,
}

impl ClientHandler<GoldConf> for Replay {
    fn on_server_msg(&mut self, conn: &mut Connection<GoldConf>, msg: Msg<'_>) {
        let theirs = frames(PINGPONG_S2C)[self.echoed + 1];
        assert_eq!(msg.msg_type(), header(theirs).msg_type);
        assert_eq!(msg.body(), &theirs[8..header(theirs).size as usize]);
        self.echoed += 1;
        conn.pop();
    }
}

#[test]
fn our_client_talks_to_the_cpp_server_byte_for_byte() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (c2s, s2c) = (frames(PINGPONG_C2S), frames(PINGPONG_S2C));
    let peer = std::thread::spawn(move || {
        // Plays the recorded C++ server, garbage padding included.
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for i in 0..16 {
            let ours = read_frame(&mut sock);
            if i == 0 {
                assert_same_at(&ours, c2s[0], &login_meaningful(c2s[0]), "login");
            } else {
                assert_same_frame(&ours, c2s[i], &format!("message {i}"));
            }
            sock.write_all(s2c[i]).unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut client = TcpShmClient::<GoldConf>::new("gold", dir.path()).unwrap();
    let mut h = Replay { next: 1, echoed: 0 };
    client.connect(false, addr, 0, &mut h).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.echoed < 15 && std::time::Instant::now() < deadline {
        if h.next == h.echoed + 1 && h.next <= 15 {
            let theirs = frames(PINGPONG_C2S)[h.next];
            let size = header(theirs).size as usize;
            assert!(client.connection().send(header(theirs).msg_type, &theirs[8..size]));
            h.next += 1;
        }
        client.poll_tcp(echo::now_ns(), &mut h);
    }
    assert_eq!(h.echoed, 15);
    peer.join().unwrap();
    assert_eq!(client.last_server_name().unwrap().as_deref(), Some("server"));
}

/// The capture's wire settings with a queue big enough for the resume state.
struct ResumeConf;
impl Conf for ResumeConf {
    const SHM_QUEUE_SIZE: usize = 1 << 20;
    const TCP_QUEUE_SIZE: usize = 1 << 17;
    const TCP_RECV_BUF_INIT_SIZE: usize = 1 << 17;
    const TCP_RECV_BUF_MAX_SIZE: usize = 1 << 17;
    const CONNECTION_TIMEOUT: i64 = 10_000_000_000;
    const HEARTBEAT_INTERVAL: i64 = 3_000_000_000;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

/// Pops everything, keeping the numbers it carried.
#[derive(Default)]
struct Collect {
    numbers: Vec<i32>,
    popped: usize,
}

impl ClientHandler<ResumeConf> for Collect {
    fn on_server_msg(&mut self, conn: &mut Connection<ResumeConf>, msg: Msg<'_>) {
        self.numbers.extend(msg.body().chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())));
        self.popped += 1;
        conn.pop();
    }
}

fn frame(msg_type: u16, ack: u32, body: &[u8]) -> Vec<u8> {
    let h = MsgHeader { size: 8 + body.len() as u16, msg_type, ack_seq: ack };
    let mut f = zerocopy::IntoBytes::as_bytes(&h).to_vec();
    f.extend_from_slice(body);
    f.resize(h.padded_size(), 0);
    f
}

/// Brings our client to the state of the captured C++ client "resume" (ack
/// 3091, queue 3091..3190, last server "server"), then lets it log in again:
/// its login must be the captured one, and it must read the captured
/// response and resent messages, cut mid-frame, through its real receive path.
#[test]
fn our_client_resumes_like_the_cpp_client() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut client = TcpShmClient::<ResumeConf>::new("resume", dir.path()).unwrap();
    let mut h = Collect::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);

    // Session 1, against a scripted server: the client pushes 3190 messages,
    // consumes 3091, and the server acknowledges 3091 of the client's.
    let script = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut login = [0u8; 56];
        s.read_exact(&mut login).unwrap();
        s.write_all(&LoginRspMsg::<ResumeConf>::new("server", LoginStatus::Ok).encode()).unwrap();
        let mut got = vec![0u8; 3190 * 16];
        s.read_exact(&mut got).unwrap();
        let mut out = vec![];
        for i in 0..3091u32 {
            out.extend(frame(1, 0, &(i as i32).to_le_bytes()));
        }
        out.extend(frame(0, 3091, &[]));
        s.write_all(&out).unwrap();
        (listener, s)
    });
    client.connect(false, addr, 0, &mut h).unwrap();
    for i in 0..3189i32 {
        assert!(client.connection().send_more(1, &i));
    }
    assert!(client.connection().send(1, &3189i32), "the last push sends the batch");
    while client.connection().seqs() != Some((3091, 3091, 3190)) {
        assert!(std::time::Instant::now() < deadline, "stuck at {:?}", client.connection().seqs());
        client.poll_tcp(echo::now_ns(), &mut h);
    }
    let (listener, first) = script.join().unwrap();
    drop(client); // as if killed: the files keep the state
    drop(first);

    // Session 2: the captured server's bytes answer our login: the response
    // and the 99 resent messages 3091..3190. (What follows in the capture
    // echoes the C++ client's new messages, acking ones ours never sent.)
    let s2c = frames(RESUME_S2C);
    let resent = 3190 - 3091;
    assert!(header(s2c[resent]).ack_seq <= 3190 && header(s2c[resent + 1]).ack_seq > 3190);
    let replay: Vec<u8> = s2c[..=resent].concat();
    let mut client = TcpShmClient::<ResumeConf>::new("resume", dir.path()).unwrap();
    let mut h = Collect::default();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut login = vec![0u8; 56];
        s.read_exact(&mut login).unwrap();
        s.write_all(&replay).unwrap();
        (login, s)
    });
    client.connect(false, addr, 0, &mut h).unwrap();
    while h.popped < resent {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {resent}: {:?}",
            h.popped,
            client.connection().close_reason()
        );
        client.poll_tcp(echo::now_ns(), &mut h);
    }
    let (login, _s) = peer.join().unwrap();
    assert_same_at(&login, &RESUME_C2S[..56], &login_meaningful(&RESUME_C2S[..56]), "resume login");
    let first = numbers(frames(RESUME_S2C)[1])[0];
    assert!(h.numbers.iter().enumerate().all(|(i, &v)| v == first + i as i32));
    assert_eq!(client.connection().seqs(), Some((3091 + resent as u32, 3190, 3190)), "all acked by the response");
    let lastserver = std::fs::read(tcpshm::ptcp::lastserver_path(dir.path(), "resume")).unwrap();
    assert_eq!(lastserver, RESUME_LASTSERVER);
}

/// The captured C++ client's shm-mode login gets the captured answer, and
/// our server then reads a message the C++ way: written into the shared
/// queue as the C++ producer lays it out (header in host order, 64-byte
/// blocks, write_idx after the blocks).
#[test]
fn our_server_serves_the_cpp_client_over_shm() {
    let dir = tempfile::tempdir().unwrap();
    // The capture's names are fixed; a server name of ours keeps the objects unique.
    let server_name = format!("server{}", std::process::id() % 10_000);
    let mut server = TcpShmServer::<GoldConf>::new(&server_name, dir.path()).unwrap();
    server.start("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let stop = AtomicBool::new(false);
    let got = std::sync::Mutex::new(vec![]);
    struct Keep<'a>(&'a std::sync::Mutex<Vec<(u16, Vec<u8>)>>);
    impl tcpshm::ServerHandler<GoldConf> for Keep<'_> {
        fn on_client_msg(&mut self, conn: &mut Connection<GoldConf>, msg: Msg<'_>) {
            self.0.lock().unwrap().push((msg.msg_type(), msg.body().to_vec()));
            conn.pop();
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut h = Keep(&got);
            while !stop.load(Ordering::Relaxed) {
                server.poll_ctl(echo::now_ns(), &mut h);
                server.poll_shm(0, &mut h);
            }
        });
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        sock.write_all(SHM_LOGIN_C2S).unwrap();
        let rsp = read_frame(&mut sock);
        let mut theirs = SHM_LOGIN_S2C.to_vec();
        theirs[18..34].fill(0);
        theirs[18..18 + server_name.len()].copy_from_slice(server_name.as_bytes());
        assert_same_at(&rsp, &theirs, &rsp_meaningful(&theirs), "shm login response");

        // Block 0 of the client-to-server queue, as the C++ producer writes it.
        use std::os::unix::fs::FileExt;
        let q = tcpshm::shm::shm_path("goldshm", &server_name);
        let f = std::fs::OpenOptions::new().write(true).open(&q).unwrap();
        let mut block = vec![0u8; 24];
        block[..8].copy_from_slice(zerocopy::IntoBytes::as_bytes(&MsgHeader { size: 24, msg_type: 4, ack_seq: 0 }));
        for (i, v) in [7i32, 8, 9, 10].iter().enumerate() {
            block[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        f.write_at(&block, 0).unwrap();
        f.write_at(&1u32.to_ne_bytes(), GoldConf::SHM_QUEUE_SIZE as u64).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the message never arrived");
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(got.lock().unwrap()[0], (4, block_body()));
    for (a, b) in [("goldshm", server_name.as_str()), (server_name.as_str(), "goldshm")] {
        let _ = std::fs::remove_file(tcpshm::shm::shm_path(a, b));
    }
}

fn block_body() -> Vec<u8> {
    [7i32, 8, 9, 10].iter().flat_map(|v| v.to_le_bytes()).collect()
}
