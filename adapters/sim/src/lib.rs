//! # snapc-sim
//!
//! Deterministic simulation of whole snapc jobs, driven by one seed, running
//! the same `snapc-core` machines as the POSIX adapter; and the same world
//! driven by hand, step by step, for scripted scenarios.
//!
//! - [`scenario`]: what one seed decides: nodes, ranks, the operations and
//!   the fault rates.
//! - [`devices`]: the simulated devices (message transport, FIFO writes,
//!   signals, the application's hooks, stable storage, the runtime), each a
//!   plain device with fault injection as a decorator around it, so a run
//!   without faults goes through the same code.
//! - [`world`]: the world (one global coordinator, one local coordinator per
//!   node, the ranks), its event queue on a virtual clock that jumps to the
//!   next event, the hosts of the three machines, the FIFO model, the
//!   runtime, and the driver of a seed's operations.
//! - [`checkers`]: the invariants, one checker per family, checked at every
//!   step.
//! - [`script`]: scripted scenarios on the same world: a fixed topology,
//!   explicit operations, scripted devices, and every byte string per
//!   channel recorded next to the trace hash.
//! - [`trace`]: the event trace and its hash.
//!
//! [`run_seed`] runs one seed; the `snapc-sim` binary (feature `cli`)
//! sweeps ranges of them.
#![forbid(unsafe_code)]

pub use snapc_core as core;

pub mod checkers;
pub mod devices;
pub mod rng;
pub mod scenario;
pub mod script;
pub mod trace;
pub mod world;

pub use scenario::{FaultLevel, Mutation, Options, Scenario};
pub use world::{RunResult, Violation, run_scenario, run_seed};
