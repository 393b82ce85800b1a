//! The `deploy` binary: all of it is in the library (`deploy_cli::main`), so
//! the end-to-end tests build a copy of it.

fn main() -> std::process::ExitCode {
    deploy_cli::main()
}
