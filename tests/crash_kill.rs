//! The echo pair survives SIGKILL: the `echo_server` / `echo_client` example
//! binaries run as child processes and are killed mid-stream, then started
//! again on the same files; every number comes back exactly once, in order
//! (the client checks each one against its persisted counter).

#[path = "../examples/common/echo.rs"]
mod echo;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use echo::{ClientOpts, Counters};

/// An example binary of this test's profile. `cargo test` builds the
/// examples beside the tests; when only this test was built, build them.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let release = profile_dir.file_name().is_some_and(|p| p == "release");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--examples"])
            .args(release.then_some("--release"))
            .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "building the examples failed");
    }
    path
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn spawn_server(name: &str, dir: &Path, addr: &str) -> Child {
    Command::new(example("echo_server"))
        .args(["--name", name, "--addr", addr, "--quiet", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn spawn_client(name: &str, server: &str, dir: &Path, addr: &str, use_shm: bool, count: u64) -> Child {
    let mut cmd = Command::new(example("echo_client"));
    cmd.args(["--name", name, "--server-name", server, "--addr", addr, "--stream", "--timeout", "60"])
        .args(["--count", &count.to_string(), "--dir"])
        .arg(dir)
        .stdout(Stdio::null());
    if use_shm {
        cmd.arg("--shm");
    }
    cmd.spawn().unwrap()
}

/// Waits (bounded) until the client's counters show `n` numbers echoed.
fn wait_received(counters: &mut Counters, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while counters.received() < n {
        assert!(Instant::now() < deadline, "stuck at {} of {n}", counters.received());
        std::thread::yield_now();
    }
}

fn names(tag: &str) -> (String, String) {
    let pid = std::process::id() % 100_000;
    (format!("k{pid}{tag}"), format!("s{pid}{tag}"))
}

fn server_killed(tag: &str, use_shm: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (client, server) = names(tag);
    let addr = free_addr();
    let count = 40_000;
    let mut child = spawn_server(&server, dir.path(), &addr);
    let mut counters = Counters::open(dir.path(), &client, &server).unwrap();
    let received = std::thread::scope(|s| {
        let run = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut received = 0;
            while received < count && Instant::now() < deadline {
                let o = ClientOpts {
                    name: &client,
                    server_name: &server,
                    ptcp_dir: dir.path(),
                    addr: &addr,
                    use_shm,
                    count,
                    stream: true,
                    pin: None,
                    progress: false,
                    deadline: Duration::from_secs(60),
                    stop_after: None,
                };
                match echo::run_client(&o) {
                    Ok(r) => received = r.received,
                    Err(e) if e.starts_with("connect") => {}
                    Err(e) => panic!("{e}"),
                }
            }
            received
        });
        for threshold in [5_000, 15_000, 25_000] {
            wait_received(&mut counters, threshold);
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            child = spawn_server(&server, dir.path(), &addr);
        }
        run.join().unwrap()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(received, count);
    assert_eq!((counters.sent(), counters.received()), (count, count));
    echo::remove_shm(&client, &server);
}

fn client_killed(tag: &str, use_shm: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (client, server) = names(tag);
    let addr = free_addr();
    let count = 40_000;
    let mut srv = spawn_server(&server, dir.path(), &addr);
    let mut counters = Counters::open(dir.path(), &client, &server).unwrap();
    for threshold in [5_000, 15_000, 25_000] {
        let mut c = spawn_client(&client, &server, dir.path(), &addr, use_shm, count);
        wait_received(&mut counters, threshold);
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }
    let status = spawn_client(&client, &server, dir.path(), &addr, use_shm, count).wait().unwrap();
    srv.kill().unwrap();
    srv.wait().unwrap();
    assert!(status.success(), "the last client run failed: {status}");
    assert_eq!((counters.sent(), counters.received()), (count, count));
    echo::remove_shm(&client, &server);
}

#[test]
fn tcp_resumes_after_server_sigkill() {
    server_killed("ts", false);
}

#[test]
fn shm_resumes_after_server_sigkill() {
    server_killed("ss", true);
}

#[test]
fn tcp_resumes_after_client_sigkill() {
    client_killed("tc", false);
}

#[test]
fn shm_resumes_after_client_sigkill() {
    client_killed("sc", true);
}
