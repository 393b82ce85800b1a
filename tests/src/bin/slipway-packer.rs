//! A copy of the `packer` binary inside this package, so the end-to-end tests
//! can start it as a process (`CARGO_BIN_EXE_slipway-packer`).

fn main() -> std::process::ExitCode {
    packer::cli::main()
}
