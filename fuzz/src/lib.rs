//! Fuzz targets of snapc; the checks live in [`checks`] so that the corpus
//! replay test runs them on stable Rust too.

pub mod checks;
