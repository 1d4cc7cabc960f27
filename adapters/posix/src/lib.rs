//! # snapc-posix
//!
//! What an application (or a Rust runtime) links to take part in snapc's
//! checkpoints on a POSIX system: the application API ([`app`]), the
//! handshake FIFOs and their private directory ([`fifo`]), the checkpoint
//! signal ([`signal`]), the rank's link to its node daemon ([`link`]) and
//! how a rank that a launcher started joins it ([`join`]), the
//! rank's side of the snapshot store ([`sstore`], [`store`]), the FIFO
//! half of a local coordinator ([`lcio`]) and what it reads of the
//! processes it coordinates ([`target`]).
//!
//! The `snapc` command, the node daemon and its store live in
//! `snapc-runtime`; nothing here pulls them in.

pub mod app;
pub mod fifo;
mod flush;
pub mod join;
pub mod lcio;
pub mod link;
pub mod node;
pub mod pipenames;
pub mod signal;
pub mod sstore;
pub mod store;
pub mod target;
