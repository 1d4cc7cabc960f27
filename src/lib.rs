//! snapc: checkpoint coordination for HPC compute-node runtimes.
//!
//! This facade re-exports the workspace's crates so that a runtime can depend
//! on one package:
//! - [`core`] (`snapc-core`): `no_std` wire encoding and state machines;
//! - [`posix`] (`snapc-posix`): what an application links: the application
//!   API, FIFOs, signals, the daemon link;
//! - `runtime` (`snapc-runtime`, feature `runtime`): the node daemon, the
//!   snapshot store and the `snapc` command;
//! - `sim` (`snapc-sim`, feature `sim`): deterministic simulation of whole jobs.
#![forbid(unsafe_code)]

pub use snapc_core as core;
pub use snapc_posix as posix;
#[cfg(feature = "runtime")]
pub use snapc_runtime as runtime;
#[cfg(feature = "sim")]
pub use snapc_sim as sim;
