//! Chaos for the echo pair: the `echo_server` and `echo_client` example
//! binaries run as child processes on one ptcp dir and are killed with
//! SIGKILL at seeded random moments (the client, the server, or both), then
//! started again, until every number came back. The client checks each
//! echoed number against its persisted counter, so a number lost, duplicated
//! or reordered anywhere makes it exit with the first wrong one. Shared by
//! `tests/crash_chaos.rs` and `examples/chaos.rs`; needs the `echo` module
//! beside it.
#![allow(dead_code)]

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::echo::Counters;

/// What to run.
pub struct ChaosOpts<'a> {
    pub dir: &'a Path,
    pub use_shm: bool,
    pub kills: u32,
    pub count: u64,
    pub seed: u64,
    /// Where `echo_server` and `echo_client` are.
    pub bin_dir: PathBuf,
    /// Bound of every wait for progress.
    pub patience: Duration,
}

/// How often each side was killed.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub client_kills: u32,
    pub server_kills: u32,
    pub both_kills: u32,
    /// Kills that came after the last number was back (count too small).
    pub kills_after_end: u32,
}

/// Why a run failed: always names the seed, and the client's first wrong
/// number when that is the cause.
#[derive(Debug)]
pub struct ChaosError {
    pub seed: u64,
    pub what: String,
}

impl fmt::Display for ChaosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {}: {}", self.seed, self.what)
    }
}

/// xorshift64*: seeded, so a failing run can be replayed with its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A seed from the clock, for runs that were not given one.
pub fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.as_nanos() as u64 ^ (std::process::id() as u64) << 32
}

/// The directory of the example binaries built beside the running one
/// (`target/<profile>/examples`), building them if they are missing.
pub fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // An example runs from .../examples/, a test from .../deps/.
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_owned();
    let dir = profile_dir.join("examples");
    if !dir.join("echo_server").exists() || !dir.join("echo_client").exists() {
        let release = profile_dir.file_name().is_some_and(|p| p == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", "echo_server", "--example", "echo_client"])
            .args(release.then_some("--release"))
            .env("CARGO_TARGET_DIR", profile_dir.parent().expect("target dir"))
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the echo examples failed");
    }
    dir
}

struct Pair<'a> {
    o: &'a ChaosOpts<'a>,
    client_name: String,
    server_name: String,
    addr: String,
    server: Option<Child>,
    client: Option<Child>,
    /// Client runs so far; each writes its own log.
    client_runs: u32,
}

impl Pair<'_> {
    fn log(&self, run: u32) -> PathBuf {
        self.o.dir.join(format!("client.{run}.log"))
    }

    fn spawn_server(&mut self) -> Result<(), String> {
        let child = Command::new(self.o.bin_dir.join("echo_server"))
            .args(["--name", &self.server_name, "--addr", &self.addr, "--quiet", "--dir"])
            .arg(self.o.dir)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning echo_server: {e}"))?;
        self.server = Some(child);
        Ok(())
    }

    fn spawn_client(&mut self) -> Result<(), String> {
        self.client_runs += 1;
        let log = File::create(self.log(self.client_runs)).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(self.o.bin_dir.join("echo_client"));
        cmd.args(["--name", &self.client_name, "--server-name", &self.server_name, "--addr", &self.addr])
            .args(["--stream", "--reconnect", "--timeout", &self.o.patience.as_secs().max(1).to_string()])
            .args(["--count", &self.o.count.to_string(), "--dir"])
            .arg(self.o.dir)
            .stdout(log);
        if self.o.use_shm {
            cmd.arg("--shm");
        }
        self.client = Some(cmd.spawn().map_err(|e| format!("spawning echo_client: {e}"))?);
        Ok(())
    }

    /// The client's last lines, for a failure message.
    fn client_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log(self.client_runs)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// An error if the client exited on its own (before being done).
    fn check_client(&mut self) -> Result<(), String> {
        if let Some(c) = self.client.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                self.client = None;
                return Err(format!("the client exited ({status}) before the end: {}", self.client_tail()));
            }
        }
        Ok(())
    }

    fn kill(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Pair<'_> {
    fn drop(&mut self) {
        Pair::kill(&mut self.client);
        Pair::kill(&mut self.server);
        let _ = std::fs::remove_file(tcpshm::shm::shm_path(&self.client_name, &self.server_name));
        let _ = std::fs::remove_file(tcpshm::shm::shm_path(&self.server_name, &self.client_name));
    }
}

/// A port free at the moment (the server binds it again after each kill).
fn free_addr() -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.to_string())
}

/// Runs the pair to the end under `kills` random kills; checks that every
/// number 0..count came back exactly once, in order.
pub fn run(o: &ChaosOpts, mut on_kill: impl FnMut(u32, &str, u64)) -> Result<ChaosReport, ChaosError> {
    let fail = |what: String| ChaosError { seed: o.seed, what };
    let tag = format!("{}{}", std::process::id() % 100_000, if o.use_shm { "s" } else { "t" });
    let mut pair = Pair {
        o,
        client_name: format!("chaosc{tag}"),
        server_name: format!("chaoss{tag}"),
        addr: free_addr().map_err(fail)?,
        server: None,
        client: None,
        client_runs: 0,
    };
    let mut counters = Counters::open(o.dir, &pair.client_name, &pair.server_name).map_err(|e| fail(e.to_string()))?;
    let mut rng = Rng::new(o.seed);
    let mut report = ChaosReport::default();
    pair.spawn_server().map_err(fail)?;
    pair.spawn_client().map_err(fail)?;
    // Each kill waits for a random amount of progress after the restart
    // before it, so every kill hits a resumed stream; together they use at
    // most half of it.
    let step = (o.count / (2 * o.kills.max(1) as u64)).max(1);
    for k in 0..o.kills {
        let target = (counters.received() + 1 + rng.below(step)).min(o.count - 1);
        let deadline = Instant::now() + o.patience;
        while counters.received() < target {
            pair.check_client().map_err(fail)?;
            if Instant::now() > deadline {
                return Err(fail(format!("no progress past {} of {}", counters.received(), o.count)));
            }
            std::thread::yield_now();
        }
        let until = Instant::now() + Duration::from_micros(rng.below(300));
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let victim = match rng.below(3) {
            0 => {
                Pair::kill(&mut pair.client);
                report.client_kills += 1;
                "client"
            }
            1 => {
                Pair::kill(&mut pair.server);
                report.server_kills += 1;
                "server"
            }
            _ => {
                Pair::kill(&mut pair.client);
                Pair::kill(&mut pair.server);
                report.both_kills += 1;
                "both"
            }
        };
        let received = counters.received();
        report.kills_after_end += (received == o.count) as u32;
        on_kill(k, victim, received);
        if pair.server.is_none() {
            pair.spawn_server().map_err(fail)?;
        }
        if pair.client.is_none() {
            pair.spawn_client().map_err(fail)?;
        }
    }
    let deadline = Instant::now() + o.patience;
    let status = loop {
        let client = pair.client.as_mut().expect("running");
        match client.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::yield_now(),
            _ => return Err(fail(format!("the client did not finish: {} of {}", counters.received(), o.count))),
        }
    };
    pair.client = None;
    if !status.success() {
        return Err(fail(format!("the client failed ({status}): {}", pair.client_tail())));
    }
    let (sent, received) = (counters.sent(), counters.received());
    if (sent, received) != (o.count, o.count) {
        return Err(fail(format!("counters sent {sent} received {received}, expected {}", o.count)));
    }
    Ok(report)
}
