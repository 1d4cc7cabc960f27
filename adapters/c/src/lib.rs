//! libsnapc: the C ABI of snapc, for applications and runtimes written in
//! C, C++ and Fortran. The header is `include/snapc.h` (generated from this
//! crate by cbindgen, checked in); the Fortran module is
//! `include/snapc.f90`; `install.sh` installs both with `libsnapc.a`,
//! `libsnapc.so` and `snapc.pc`.
//!
//! Two audiences:
//! - applications ([`app`]): `snapc_start`, `snapc_progress`,
//!   `snapc_request_checkpoint`, `snapc_stop`, `snapc_last_error` and the
//!   rest, over `snapc_posix::app::Snapc`;
//! - runtimes ([`runtime`]): snapc-core's three machines in caller-owned
//!   storage, bytes in and bytes out, the caller's clock, no allocation and
//!   no callbacks (`snapc_ac_*`, `snapc_lc_*`, `snapc_gc_*`).
//!
//! Every entry point checks its pointers and catches panics: nothing
//! unwinds into C.
// C names for C types and constants, as the header shows them.
#![allow(non_camel_case_types, clippy::upper_case_acronyms)]
// Each unsafe entry point states its safety contract in its doc comment,
// which cbindgen carries into the header.
#![allow(clippy::missing_safety_doc)]

pub mod app;
pub mod runtime;
