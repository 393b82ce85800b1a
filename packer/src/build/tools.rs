//! The package managers a build needs beyond pip and npm (uv, Poetry,
//! pnpm, Yarn, Bun), at pinned versions, installed by packer itself from
//! PyPI or the npm registry into its cache — never onto the machine.
//!
//! Each tool at each version is installed once, in a sandbox of its own
//! whose only writable place is a staging directory, renamed into
//! `<cache_dir>/tools/<name>-<version>` when complete (under a file lock,
//! so concurrent builds install it once). Builds see the tools directory
//! read-only at `/cache/tools`: one app's build cannot change the tool
//! another's runs. Without a cache directory, a tool is installed into the
//! build's own `/tmp`, each build.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::interp::Interpreter;
use super::step::run_step_in;
use super::{Ctx, took};
use crate::BuildError;
use crate::log::Log;
use crate::sandbox::Jail;

/// Where builds see the shared tools.
pub(crate) const INSIDE_TOOLS: &str = "/cache/tools";

/// The versions packer installs when a project does not name one.
pub(crate) const UV: &str = "0.13.9";
pub(crate) const POETRY: &str = "2.5.1";
const POETRY_EXPORT: &str = "1.10.1";
pub(crate) const PNPM: &str = "9.15.9";
pub(crate) const YARN_CLASSIC: &str = "1.22.22";
pub(crate) const YARN_BERRY: &str = "4.9.2";
pub(crate) const BUN: &str = "1.2.19";

/// A package manager at a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tool {
    Uv,
    Poetry,
    Pnpm(String),
    Yarn(String),
    Bun(String),
}

impl Tool {
    fn name(&self) -> &'static str {
        match self {
            Tool::Uv => "uv",
            Tool::Poetry => "poetry",
            Tool::Pnpm(_) => "pnpm",
            Tool::Yarn(_) => "yarn",
            Tool::Bun(_) => "bun",
        }
    }

    pub(crate) fn version(&self) -> &str {
        match self {
            Tool::Uv => UV,
            Tool::Poetry => POETRY,
            Tool::Pnpm(v) | Tool::Yarn(v) | Tool::Bun(v) => v,
        }
    }

    /// `yarn@1.22.22`, for the log.
    pub(crate) fn label(&self) -> String {
        format!("{}@{}", self.name(), self.version())
    }

    /// Python tools are installed for one interpreter.
    fn is_python(&self) -> bool {
        matches!(self, Tool::Uv | Tool::Poetry)
    }

    /// The install command, run in the staging directory (`/build`).
    fn install_command(&self, python: &Path) -> String {
        match self {
            Tool::Uv | Tool::Poetry => {
                let packages = match self {
                    Tool::Uv => format!("uv=={UV}"),
                    _ => format!("poetry=={POETRY} poetry-plugin-export=={POETRY_EXPORT}"),
                };
                format!(
                    "{} -m pip install --no-input --disable-pip-version-check --no-warn-script-location --root-user-action=ignore --target /build/lib {packages}",
                    super::python::quote(python)
                )
            }
            Tool::Pnpm(v) => npm_install("pnpm", v),
            Tool::Yarn(v) if v.starts_with("1.") => npm_install("yarn", v),
            Tool::Yarn(v) => npm_install("@yarnpkg/cli-dist", v),
            Tool::Bun(v) => npm_install("bun", v),
        }
    }

    /// How a build runs it, given where the tool is seen inside.
    fn command(&self, dir: &Path, python: &Path) -> String {
        let d = dir.display();
        let py = super::python::quote(python);
        match self {
            Tool::Uv => format!("{d}/lib/bin/uv"),
            Tool::Poetry => format!("env PYTHONPATH={d}/lib {py} -m poetry"),
            Tool::Pnpm(_) => format!("node {d}/node_modules/pnpm/bin/pnpm.cjs"),
            Tool::Yarn(v) if v.starts_with("1.") => {
                format!("node {d}/node_modules/yarn/bin/yarn.js")
            }
            Tool::Yarn(_) => format!("node {d}/node_modules/@yarnpkg/cli-dist/bin/yarn.js"),
            Tool::Bun(_) => format!("{d}/node_modules/bun/bin/bun.exe"),
        }
    }
}

fn npm_install(package: &str, version: &str) -> String {
    format!(
        "npm install --prefix /build --no-save --no-package-lock --no-audit --no-fund --loglevel=error {package}@{version}"
    )
}

/// Whether a version asked for by a project can name a tool release: it
/// goes into a command line and a directory name.
pub(crate) fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.as_bytes()[0].is_ascii_digit()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
}

/// Makes `tool` available to the build; returns the command that runs it
/// inside the sandbox. `asked_by` names what chose it, for errors.
pub(crate) fn ensure(
    ctx: &Ctx,
    tool: &Tool,
    python: &Interpreter,
    asked_by: &str,
    log: &mut Log,
) -> Result<String, BuildError> {
    let dir_name = if tool.is_python() {
        let runtime = python.runtime();
        format!("{}-{}-py{}", tool.name(), tool.version(), runtime.version)
    } else {
        format!("{}-{}", tool.name(), tool.version())
    };
    let (root, inside_root) = match &ctx.tools_dir {
        Some(shared) => (shared.clone(), PathBuf::from(INSIDE_TOOLS)),
        None => (
            ctx.tmp.join("tools"),
            ctx.jail.inside(&ctx.tmp.join("tools")),
        ),
    };
    std::fs::create_dir_all(&root)
        .map_err(|e| BuildError::io(format!("creating {}", root.display()), e))?;
    let done = root.join(&dir_name);
    let run = tool.command(&inside_root.join(&dir_name), &python.path);
    let lock_path = root.join(format!(".{dir_name}.lock"));
    let _lock = File::create(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| BuildError::io(format!("locking {}", lock_path.display()), e))?;
    if done.is_dir() {
        log.line(format!("{}: from the tools cache", tool.label()));
        return Ok(run);
    }
    let started = std::time::Instant::now();
    log.line(format!(
        "{}: installing it into the builder's tools ({asked_by})",
        tool.label()
    ));
    let staging = root.join(format!(".{dir_name}.{}", std::process::id()));
    let scratch = root.join(format!(".{dir_name}.{}.tmp", std::process::id()));
    for d in [&staging, &scratch] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d)
            .map_err(|e| BuildError::io(format!("creating {}", d.display()), e))?;
    }
    let mut jail = Jail::new(&ctx.req.settings.sandbox, &staging, &scratch, &[]);
    if let Some(prefix) = &python.prefix {
        jail.add_toolchain(prefix);
    }
    jail.hand_over(&staging)?;
    jail.hand_over(&scratch)?;
    let command = tool.install_command(&python.path);
    let scratch_inside = jail.inside(&scratch).display().to_string();
    let npm_cache = format!("{scratch_inside}/npm-cache");
    let env = [
        ("npm_config_cache", npm_cache.as_str()),
        ("npm_config_update_notifier", "false"),
        ("PIP_NO_CACHE_DIR", "1"),
    ];
    let result = run_step_in(ctx, &jail, &staging, &command, &env, true, log);
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(failure) = result {
        let _ = std::fs::remove_dir_all(&staging);
        let reason = match failure {
            super::step::StepFailure::Exited { status, output } => {
                let culprit = super::step::culprit_line(&output)
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                format!("installing it from the package registry {status}{culprit}")
            }
            other => other.into_error(&command, ctx).to_string(),
        };
        return Err(BuildError::PackageManager {
            tool: tool.label(),
            source_file: asked_by.to_string(),
            reason,
            log: String::new(),
        });
    }
    std::fs::rename(&staging, &done)
        .map_err(|e| BuildError::io(format!("keeping {}", done.display()), e))?;
    log.line(format!("{}: installed in {}", tool.label(), took(started)));
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_versions_name_a_tool() {
        assert!(valid_version("9.15.9"));
        assert!(valid_version("4.0.0-rc.1"));
        assert!(!valid_version("latest"));
        assert!(!valid_version("9; rm -rf /"));
        assert!(!valid_version("../9"));
        assert!(!valid_version(""));
    }
}
