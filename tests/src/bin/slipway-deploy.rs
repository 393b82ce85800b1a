//! A copy of the `deploy` CLI inside this package, so the end-to-end tests
//! can run it as a process (`CARGO_BIN_EXE_slipway-deploy`).

fn main() -> std::process::ExitCode {
    deploy_cli::main()
}
