//! The `versionchecker` binary: see `cli`.

fn main() -> std::process::ExitCode {
    versionchecker::cli::main()
}
