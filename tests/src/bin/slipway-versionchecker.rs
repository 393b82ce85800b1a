//! A copy of the `versionchecker` binary inside this package, so the end-to-end
//! tests can run it as a process (`CARGO_BIN_EXE_slipway-versionchecker`).

fn main() -> std::process::ExitCode {
    versionchecker::cli::main()
}
