//! # snapc-runtime
//!
//! The `snapc` command and what it runs: direct checkpoints of running
//! processes ([`direct`]), the node daemon and launcher ([`daemon`]) with its
//! snapshot store ([`snapstore`]) and control socket ([`control`]), the demos
//! ([`demo`], and [`mpi_demo`] with the MPI heat stencil) and the `counter`
//! application ([`counter`]), the JSON form of
//! the wire messages ([`json`]), the command line ([`cli`]) and its log
//! ([`logging`]).
//!
//! Applications link `snapc-posix` only.

pub mod cli;
pub mod control;
pub mod counter;
pub mod daemon;
pub mod demo;
pub mod direct;
pub mod fds;
pub mod json;
pub mod list;
pub mod logging;
pub mod mpi_demo;
pub mod out;
pub mod snapstore;
