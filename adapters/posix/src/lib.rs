//! # snapc-posix
//!
//! The POSIX side of snapc. For now: the JSON form of the wire messages that
//! the `snapc wire` command reads and prints ([`json`]), and the command
//! itself ([`cli`]).

pub mod app;
pub mod cli;
pub mod direct;
pub mod fifo;
pub mod json;
pub mod link;
pub mod signal;
pub mod store;
