//! A copy of the `apptracker` binary inside this package, so the end-to-end tests
//! can start it as a process (`CARGO_BIN_EXE_slipway-apptracker`).

fn main() -> std::process::ExitCode {
    apptracker::cli::main()
}
