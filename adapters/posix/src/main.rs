//! The `snapc` command.

fn main() -> std::process::ExitCode {
    snapc_posix::cli::main()
}
