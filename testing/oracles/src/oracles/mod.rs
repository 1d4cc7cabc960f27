//! What must hold for any input: the wire's decoders and encoders
//! ([`wire`]), and per coordinator a model checked after every input.

pub mod app;
pub mod global;
pub mod local;
pub mod wire;
