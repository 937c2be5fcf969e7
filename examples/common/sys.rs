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

/// The CPUs this process may run on (its affinity mask), in order; empty
/// if the machine does not say.
#[allow(dead_code)] // the benches include this file and pin by number
pub fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect(),
        Err(_) => Vec::new(),
    }
}
