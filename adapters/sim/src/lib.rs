//! # snapc-sim
//!
//! Deterministic simulation of whole snapc jobs, driven by one seed, running
//! the same `snapc-core` machines as the POSIX adapter (issue 6).
//!
//! - [`scenario`]: what one seed decides: nodes, ranks, the operations and
//!   the fault rates.
//! - [`devices`]: the simulated devices (message transport, FIFO writes,
//!   signals, the application's hooks and stable storage), each a plain
//!   device with fault injection as a decorator around it, so a run without
//!   faults goes through the same code.
//! - [`world`]: the world (one global coordinator, one local coordinator per
//!   node, the ranks), its event queue on a virtual clock that jumps to the
//!   next event, the runtime (terminate, migrate, restart) and the
//!   invariants checked at every step.
//! - [`trace`]: the event trace and its hash.
//!
//! [`run_seed`] runs one seed; the `snapc-sim` binary sweeps ranges of them.
#![forbid(unsafe_code)]

pub use snapc_core as core;

pub mod devices;
pub mod rng;
pub mod scenario;
pub mod trace;
pub mod world;

pub use scenario::{FaultLevel, Mutation, Options, Scenario};
pub use world::{RunResult, Violation, run_scenario, run_seed};
