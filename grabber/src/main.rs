//! The `grabber` binary; everything is in `grabber::cli`.

fn main() -> std::process::ExitCode {
    grabber::cli::main()
}
