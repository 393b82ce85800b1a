//! The `apptracker` binary; everything is in `apptracker::cli`.

fn main() -> std::process::ExitCode {
    apptracker::cli::main()
}
