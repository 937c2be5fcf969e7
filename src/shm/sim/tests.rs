//! The simulation's seeds, and focused tests of what it found.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use super::Sim;

/// Seeds run by default: a few seconds in a release build.
const DEFAULT_SEEDS: u64 = if cfg!(debug_assertions) { 300 } else { 3000 };

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// A directory on tmpfs (as the real objects are), removed afterwards.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tcpshm-sim-")
        .tempdir_in(super::super::SHM_DIR)
        .or_else(|_| tempfile::tempdir())
        .expect("scratch directory")
}

/// Runs one seed: its schedule, then the final drain. The error names the
/// step; a panic inside the queue is reported as an error too.
fn run(dir: &Path, seed: u64, trace: bool) -> Result<u64, (u64, String, Vec<String>)> {
    let mut ops = 0;
    let mut failed_step = 0;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = Sim::new(dir, seed, trace).map_err(|e| (0, e, vec![]))?;
        let steps = 50 + sim.rng.below(500);
        for step in 1..=steps {
            failed_step = step;
            sim.step().map_err(|e| (step, e, sim.trace().to_vec()))?;
        }
        failed_step = steps + 1;
        sim.finish().map_err(|e| (steps + 1, e, sim.trace().to_vec()))?;
        ops = sim.ops;
        Ok(sim.ops)
    }));
    match result {
        Ok(r) => r,
        Err(panic) => {
            let what = panic.downcast_ref::<String>().cloned().or(panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err((failed_step, format!("panic: {}", what.unwrap_or_default()), vec![]))
        }
    }
}

/// Runs `seeds`, printing a failing seed (with its trace, replayed) and the
/// command that replays it.
fn run_seeds(seeds: impl IntoIterator<Item = u64>, trace: bool) -> u64 {
    let dir = scratch();
    let mut total = 0;
    for seed in seeds {
        match run(dir.path(), seed, trace) {
            Ok(ops) => total += ops,
            Err((step, msg, lines)) => {
                // Replayed with its trace on (the same schedule: the seed is all of it).
                let trace =
                    if trace { lines } else { run(dir.path(), seed, true).err().map(|e| e.2).unwrap_or_default() };
                for line in &trace {
                    eprintln!("  {line}");
                }
                panic!(
                    "shm sim: seed {seed} failed at step {step}: {msg}\n  replay: TCPSHM_SIM_SEED={seed} cargo test \
                     --release --lib shm::sim -- --nocapture"
                );
            }
        }
    }
    total
}

/// The default seeds, or `TCPSHM_SIM_SEEDS` of them from `TCPSHM_SIM_FIRST`,
/// or the single `TCPSHM_SIM_SEED` with its trace.
#[test]
fn shm_queue_simulation() {
    let start = Instant::now();
    let one = env_u64("TCPSHM_SIM_SEED");
    let (first, count) = match one {
        Some(seed) => (seed, 1),
        None => (env_u64("TCPSHM_SIM_FIRST").unwrap_or(0), env_u64("TCPSHM_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)),
    };
    let ops = run_seeds(first..first + count, one.is_some());
    eprintln!("shm sim: seeds {first}..{}, {ops} operations, {:.2?}", first + count, start.elapsed());
}
