//! snapc: checkpoint coordination for HPC compute-node runtimes.
//!
//! This facade re-exports the workspace's crates so that a runtime can depend
//! on one package:
//! - [`core`] (`snapc-core`): `no_std` wire encoding and state machines;
//! - [`posix`] (`snapc-posix`): FIFOs, signals and the `snapc` command;
//! - [`sim`] (`snapc-sim`): deterministic simulation of whole jobs.
#![forbid(unsafe_code)]

pub use snapc_core as core;
pub use snapc_posix as posix;
pub use snapc_sim as sim;
