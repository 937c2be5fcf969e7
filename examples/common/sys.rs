//! The clock and CPU pinning shared by the examples and the benches: `now_ns` is the `now` every poll takes, `pin` keeps a busy-polling
//! thread on one CPU.

use std::sync::OnceLock;
use std::time::Instant;

/// Nanoseconds since the first call: the `now` of every poll.
pub fn now_ns() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as i64
}

/// Pins the calling thread to `cpu` (None: leaves it free); says so on
/// stderr if the machine refuses.
pub fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = nix::sched::CpuSet::new();
        let pinned = set.set(cpu).and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
        if let Err(e) = pinned {
            eprintln!("cannot pin to CPU {cpu}: {e}");
        }
    }
}
