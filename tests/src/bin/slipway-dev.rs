//! A copy of the `slipway` binary (`slipway dev`) inside this package, so
//! the end-to-end tests can start it as a process (`CARGO_BIN_EXE_slipway-dev`).

fn main() -> std::process::ExitCode {
    slipway_platform::cli::main()
}
