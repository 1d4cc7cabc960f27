//! # snapc-core
//!
//! The pure part of snapc: the wire encoding of Open MPI's "snapc full"
//! checkpoint-coordination protocol over fixed buffers. `no_std`, no `alloc`,
//! no `unsafe`; nothing here reads a clock, touches a file descriptor or
//! allocates.
//!
//! - [`wire::dss`]: Open MPI's DSS encoding (reader and encoder).
//! - [`wire::message`]: every coordinator message, grouped by channel
//!   ([`wire::ToGc`], [`wire::FromGc`], [`wire::ToDaemon`]).
//! - [`wire::fifo`]: the host-order frames of the FIFO handshake.
//! - [`wire::names`]: the FIFO names.
//! - [`wire::consts`]: the protocol's constants as enums.
//!
//! Every decoder is total: any byte string yields a value or a
//! [`wire::DecodeError`] naming the field and byte offset, never a panic.
//! Encoders write into a caller's `&mut [u8]` or `heapless::Vec` and report
//! [`wire::EmitError::TooSmall`] instead of panicking.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]
#![warn(missing_docs)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("snapc-core: enable at most one of the `defmt` and `log` features");

#[macro_use]
mod fmt;

pub mod app;
pub mod global;
pub mod local;
pub mod time;
pub mod wire;
