//! A small iterative computation that links snapc; see
//! [`snapc_runtime::counter`] for its options and output.
//!
//! ```text
//! counter [--run-for SECONDS | --steps N [--pace-us U]] [--request-checkpoint-at STEP]
//!         [--request-restart-at STEP [--restart-seq SEQ]]
//! ```

fn main() -> std::process::ExitCode {
    snapc_runtime::counter::main_with_args(std::env::args().skip(1))
}
