//! The `packer` binary; everything is in `packer::cli`.

fn main() -> std::process::ExitCode {
    packer::cli::main()
}
