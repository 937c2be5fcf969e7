//! Deterministic simulation of the persistent protocol (FoundationDB's and
//! TigerBeetle's way of proving such code): a real client and a real server
//! of this crate, with their real queue files, run in one thread under a
//! seeded scheduler, over a simulated network that keeps order but cuts
//! reads and writes at any size, delays, drops the link or leaves it half
//! open, while either side may crash between any two operations. A
//! reference model checks every delivery. See `ptcp.rs` for what it proves
//! and how to replay a seed.

pub(crate) mod net;
mod ptcp;
pub(crate) mod rng;
