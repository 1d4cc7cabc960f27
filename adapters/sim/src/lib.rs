//! # snapc-sim
//!
//! Deterministic simulation of whole snapc jobs, driven by one seed, running
//! the same `snapc-core` machines as the POSIX adapter. The crate holds the
//! simulated world as it is built; today it only fixes the package's place in
//! the workspace.
#![forbid(unsafe_code)]

pub use snapc_core as core;
