//! A copy of the `grabber` binary inside this package, so the end-to-end tests
//! can start it as a process (`CARGO_BIN_EXE_slipway-grabber`).

fn main() -> std::process::ExitCode {
    grabber::cli::main()
}
