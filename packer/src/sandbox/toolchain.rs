//! The interpreters' installations outside `/usr` that the sandbox binds
//! read-only, found by asking the interpreters on packer's `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The installations of the interpreters packer finds on its `PATH` that
/// live outside `/usr` (pyenv, nvm, a venv, `/opt/node`), to bind read-only:
/// each one's prefix, found from the interpreter itself.
pub(super) fn toolchain_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let probes: [(&str, &[&str]); 2] = [
        (
            "python3",
            &[
                "-c",
                "import os, sys; print(os.path.realpath(sys.base_prefix)); print(os.path.realpath(sys.prefix))",
            ],
        ),
        (
            "node",
            &[
                "-e",
                "const p = require('path'), fs = require('fs'); console.log(p.dirname(p.dirname(fs.realpathSync(process.execPath))))",
            ],
        ),
    ];
    for (program, args) in probes {
        let Ok(out) = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .output()
        else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let dir = PathBuf::from(line.trim());
            if dir.is_absolute()
                && dir != Path::new("/")
                && !dir.starts_with("/usr")
                && dir.is_dir()
                && !dirs.iter().any(|d| dir.starts_with(d))
            {
                dirs.push(dir);
            }
        }
    }
    dirs
}
