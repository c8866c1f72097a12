//! Load generation for jsonnet-courier, kept out of the library: one loopback HTTP [`Sink`]
//! (scriptable replies, optional recording) used by `courier sink`, `courier bench`, the benches
//! and the integration tests, and bounded load drivers ([`drive`], [`run_ceiling`], the service
//! runs in [`service`]), a [`LoadThread`] to run them apart from what they measure, a [`Stash`]
//! of the states their tasks keep across runs, and the CPU time each part took ([`cpu`]). Every
//! loop here is bounded by a count or a deadline.
#![warn(missing_docs)]

mod apart;
pub mod cpu;
pub mod drain;
mod drive;
pub mod service;
mod sink;
mod stash;

pub use apart::LoadThread;
pub use drive::{drive, drive_run, drive_run_with, run_ceiling, Ceiling, Run, RunStats};
pub use sink::{Record, Recorded, Reply, Sink};
pub use stash::{Kept, Stash};
