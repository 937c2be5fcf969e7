//! Deterministic simulation of the persistent protocol (FoundationDB's and
//! TigerBeetle's way of proving such code): a real client and a real server
//! of this crate, with their real queue files, run in one thread under a
//! seeded scheduler, over a simulated network that keeps order but cuts
//! reads and writes at any size, delays, drops the link or leaves it half
//! open, while either side may crash between any two operations. A
//! reference model checks every delivery. See `ptcp.rs` for what it proves
//! and how to replay a seed. `shm.rs` does the same for the shared-memory
//! queues: producers and consumers, the reply protocol, crashes between
//! any two of its steps, restarts with `catch_up`, the new-day reset and a
//! C++ producer's leftovers.

pub(crate) mod net;
mod ptcp;
pub(crate) mod rng;
// The shm simulation maps real objects; loom builds model the indices instead.
#[cfg(not(tcpshm_loom))]
mod shm;
