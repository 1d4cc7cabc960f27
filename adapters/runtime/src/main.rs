//! The `snapc` command.

fn main() -> std::process::ExitCode {
    snapc_runtime::cli::main()
}
