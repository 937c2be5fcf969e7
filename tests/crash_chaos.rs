//! No message is lost, duplicated or reordered across SIGKILLs: the echo
//! server and client run as child processes and are killed at seeded random
//! moments (the client, the server or both) at least 20 times per mode, then
//! started again; at the end every number came back exactly once, in order.
//! A failure names the seed (replay it with `examples/chaos.rs --seed`) and
//! the client's first wrong number. `TCPSHM_CHAOS_SEED` fixes the seed.

#[path = "../examples/common/echo.rs"]
mod echo;

#[path = "../examples/common/chaos.rs"]
mod chaos;

use std::time::Duration;

fn chaos(use_shm: bool) {
    let seed = std::env::var("TCPSHM_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(chaos::fresh_seed);
    let mode = if use_shm { "shm" } else { "tcp" };
    println!("{mode}: seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let opts = chaos::ChaosOpts {
        dir: dir.path(),
        use_shm,
        kills: 24,
        // Enough that the kills land in the stream: shm is 10x faster.
        count: if use_shm { 4_000_000 } else { 400_000 },
        seed,
        bin_dir: chaos::examples_dir(),
        patience: Duration::from_secs(60),
    };
    match chaos::run(&opts, |_, _, _| {}) {
        Ok(r) => {
            println!("{mode}: seed {seed}: {r:?}");
            assert_eq!(r.client_kills + r.server_kills + r.both_kills, 24);
        }
        Err(e) => panic!("{mode}: {e}"),
    }
}

#[test]
fn tcp_survives_random_kills_of_either_side() {
    chaos(false);
}

#[test]
fn shm_survives_random_kills_of_either_side() {
    chaos(true);
}
