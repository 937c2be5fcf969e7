//! A long soak of the crash test: the echo server and client as child
//! processes, killed with SIGKILL at seeded random moments (the client, the
//! server or both) and started again, until every number came back exactly
//! once and in order.
//!
//! `cargo run --release --example chaos -- [--shm] [--kills N] [--count N]
//!  [--seed S] [--patience SECS]`
//!
//! Prints the seed first; a failure prints it again with the first wrong
//! number, and `--seed` replays the same kill schedule.

#[path = "common/echo.rs"]
mod echo;

#[path = "common/chaos.rs"]
mod chaos;

use std::time::{Duration, Instant};

use echo::Args;

fn main() {
    let args = Args::from_env();
    let seed = args.opt("--seed").unwrap_or_else(chaos::fresh_seed);
    let use_shm = args.flag("--shm");
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("chaos: temporary dir: {e}");
            std::process::exit(1);
        }
    };
    let opts = chaos::ChaosOpts {
        dir: dir.path(),
        use_shm,
        kills: args.value("--kills", 200),
        count: args.value("--count", 5_000_000),
        seed,
        bin_dir: chaos::examples_dir(),
        patience: Duration::from_secs(args.value("--patience", 120)),
    };
    println!(
        "chaos: {} mode, {} kills, {} numbers, seed {seed}",
        if use_shm { "shm" } else { "tcp" },
        opts.kills,
        opts.count
    );
    let start = Instant::now();
    let result = chaos::run(&opts, |k, victim, received| {
        println!("kill {:>4}: {victim:<6} at {received} received ({:.1} s)", k + 1, start.elapsed().as_secs_f64());
    });
    match result {
        Ok(r) => println!(
            "chaos: every number came back once, in order: {} client, {} server, {} both kills \
             ({} after the end) in {:.1} s",
            r.client_kills,
            r.server_kills,
            r.both_kills,
            r.kills_after_end,
            start.elapsed().as_secs_f64()
        ),
        Err(e) => {
            println!("chaos: FAILED: {e}");
            std::process::exit(1);
        }
    }
}
