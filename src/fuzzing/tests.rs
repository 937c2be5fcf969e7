//! The fuzz targets' seeds and regressions, replayed as unit tests, and the
//! seed files kept equal to what the crate's own encoders make.

use std::path::Path;

use zerocopy::IntoBytes;

use super::ptcp_file::{ptcp_file_in, PTCP_PREFIX};
use super::shm_consumer::shm_consumer_in;
use super::tcp_frames::tcp_frames_in;
use super::{login, push_msg, resend_bytes, FrameBe, FrameLe, Scratch};
use crate::conf::{Conf, DefaultConf};
use crate::msg::{LoginMsg, LoginRspMsg, MsgHeader, HEADER_SIZE};
use crate::ptcp::format::OFF_WRITE;
use crate::ptcp::queue::PtcpQueue;
use crate::ptcp::Durability;
use crate::shm::layout::READ_IDX_OFF;
use crate::shm::{ShmRegion, ShmSender};

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
fn net_stream_seeds_and_regressions() {
    assert!(replay("net_stream", super::net_stream) > 0);
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
        super::net_stream(data);
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

    // net_stream: a codec byte, then chunks (a length byte, that many bytes).
    let chunked = |conf: u8, stream: &[u8], sizes: &[usize]| {
        let mut d = vec![conf];
        let mut at = 0;
        for &n in sizes.iter().cycle() {
            if at == stream.len() {
                break;
            }
            let end = (at + n).min(stream.len());
            d.push((end - at) as u8);
            d.extend(&stream[at..end]);
            at = end;
        }
        d
    };
    let be2: Vec<u8> = [0usize, 1, 7, 50, 100]
        .iter()
        .flat_map(|&n| [&(n as u16).to_be_bytes()[..], &vec![n as u8; n]].concat())
        .collect();
    out.push(("net_stream", "be2_every_cut", chunked(1 | 4 | 3 << 3, &be2, &[1, 3, 7, 2, 60, 5])));
    let le8: Vec<u8> =
        [300usize, 0, 9].iter().flat_map(|&n| [&(n as u64).to_le_bytes()[..], &vec![7; n]].concat()).collect();
    out.push(("net_stream", "le8_long", chunked(3 | 15 << 3, &le8, &[255, 9, 64])));
    out.push(("net_stream", "oversize", chunked(0, &[1, 5, 50, 1, 2, 3], &[2, 1])));
    out.push(("net_stream", "hostile", chunked(0x80, &[3, 1, 9, 9, 1, 2, 200, 200, 200, 0, 5, 4, 4], &[4, 2, 7])));

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
    d[1 + OFF_WRITE - PTCP_PREFIX] += 33; // folded back to 20 blocks
    out.push(("ptcp_file", "fixed_folded", d));

    // shm_consumer: an object written by our producer, then operations.
    let path = dir.path().join("q.shm");
    let mut tx = ShmSender::new(ShmRegion::open(&path, 512).unwrap()).unwrap();
    for i in 0..4u8 {
        assert!(tx.alloc(20 + 20 * i as usize));
        tx.pending_body().fill(i);
        tx.push(1 + i as u16);
    }
    let object = std::fs::read(&path).unwrap();
    let mut d = vec![3]; // 64 << 3 = 512
    d.extend(&object[512..520]);
    d.extend(&object[512 + READ_IDX_OFF..512 + READ_IDX_OFF + 4]);
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
