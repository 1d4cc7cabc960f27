//! # snapc-posix
//!
//! The POSIX side of snapc: real FIFOs and signals ([`fifo`], [`signal`]),
//! the application API ([`app`]), direct checkpoints ([`direct`]), the node
//! daemon and launcher ([`daemon`]) with its snapshot store ([`snapstore`])
//! and control socket ([`control`]), the demo ([`demo`]), the JSON form of
//! the wire messages ([`json`]) and the `snapc` command ([`cli`]).

pub mod app;
pub mod cli;
pub mod control;
pub mod counter;
pub mod daemon;
pub mod demo;
pub mod direct;
pub mod fifo;
pub mod json;
pub mod lcio;
pub mod link;
pub mod out;
pub mod signal;
pub mod snapstore;
pub mod store;
