//! The `slipway` binary; everything is in `slipway_platform::cli`.

fn main() -> std::process::ExitCode {
    slipway_platform::cli::main()
}
