//! The simulation's runs: many seeds, one seed replayed, and the scripted
//! scenarios of the defects it found.

use std::fmt::Write as _;

use super::*;

/// Runs one seed; the error is the report of the first broken promise.
fn run(seed: u64, full_trace: bool) -> Result<Stats, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut sim = Sim::new(seed, dir.path(), full_trace);
    sim.start_server();
    sim.start_client();
    let mut i = 0;
    while i < STEPS && sim.model.violation.is_none() {
        if i % 1000 == 999 {
            sim.calm_spell();
        } else {
            sim.step();
        }
        i += 1;
    }
    if sim.model.violation.is_none() {
        sim.calm_spell();
    }
    match sim.model.violation.take() {
        None => Ok(Stats { delivered: sim.model.delivered, ..sim.stats }),
        Some(why) => {
            let mut report = format!("seed {seed}: {why}\nlast steps:\n");
            for line in &sim.trace {
                let _ = writeln!(report, "  {line}");
            }
            let _ = write!(report, "replay: TCPSHM_SIM_SEED={seed} cargo test --release --lib sim::ptcp");
            Err(report)
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn exactly_once_in_order_and_no_stall_under_faults() {
    if let Some(seed) = env_u64("TCPSHM_SIM_SEED") {
        match run(seed, true) {
            Ok(stats) => return eprintln!("seed {seed}: every promise kept; {stats:?}"),
            Err(report) => panic!("{report}"),
        }
    }
    let first = env_u64("TCPSHM_SIM_FIRST").unwrap_or(0);
    let seeds = env_u64("TCPSHM_SIM_SEEDS").unwrap_or(2000);
    let mut total = Stats::default();
    for seed in first..first + seeds {
        match run(seed, false) {
            Ok(stats) => total += stats,
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!("sim::ptcp: {seeds} seeds from {first}, every promise kept; {total:?}");
}

impl Sim<'_> {
    /// Delivers every byte in flight, both ways.
    fn deliver_all(&mut self) {
        if let Some(net) = &self.net {
            net.deliver(C, usize::MAX);
            net.deliver(S, usize::MAX);
        }
    }
}

/// Found by the simulation (seed 7 of its first version): a server that
/// took a client's first login, which the client then gave up on, emptied
/// its queue at the client's next login (the client still named no last
/// server), losing what it had pushed in between.
#[test]
fn what_the_server_pushed_after_a_first_login_the_client_gave_up_on_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::new(0, dir.path(), true);
    sim.calm = true;
    sim.start_server();
    sim.start_client();
    sim.connect();
    sim.deliver_all();
    sim.advance_login();
    assert!(sim.login.as_ref().is_some_and(|l| l.server_end.is_none()), "the server took the login");
    sim.app_push(S);
    sim.app_push(S);
    assert_eq!(sim.model.queue(S, 0).sent.len(), 2);
    sim.now += LOGIN_TIMEOUT + 1;
    sim.advance_login();
    assert!(sim.login.is_none(), "the client gave up");
    sim.quiet = true;
    for _ in 0..4 {
        sim.poll(S);
        sim.connect();
        sim.deliver_all();
        sim.advance_login();
        sim.deliver_all();
        sim.advance_login();
        sim.poll(C);
    }
    assert_eq!(sim.model.violation, None);
    assert_eq!(sim.model.queue(S, 0).popped, 2, "the client got both messages");
}
