//! The `python` build type: the dependencies, from the strongest evidence
//! the project has (`pylock.rs`), installed into the release — cached by
//! the pinned set, the interpreter and the platform — and then the project
//! itself when it is a package, so `python3 -m mypkg` and its console
//! scripts work on the host; scripts are made to run on the host's
//! `python3`.

use std::path::Path;

use deploy::{BuildType, Runtime};

use super::pylock::{self, Project, Source};
use super::step::StepFailure;
use super::tools::{self, Tool};
use super::{Ctx, run_step};
use crate::config::SlipwayToml;
use crate::input::read_input;
use crate::log::Log;
use crate::{BuildError, deps};

/// Where python dependencies go, relative to the release.
const PYTHON_DEPS: &str = ".slipway/python";

pub(super) fn build(
    ctx: &Ctx,
    config: &mut SlipwayToml,
    log: &mut Log,
) -> Result<Runtime, BuildError> {
    let py = ctx.interpreter()?;
    let runtime = py.runtime();
    log.line(format!("runtime: {runtime}"));
    let project = Project::read(&ctx.src)?;
    let source = pylock::detect(&ctx.src, &project);
    log.line(format!("dependencies: {}", source.describe()));
    let dest = ctx.src.join(PYTHON_DEPS);
    if dest.exists() {
        return Err(BuildError::BadEntry {
            path: PYTHON_DEPS.into(),
            reason: "the packer installs Python dependencies here; remove it from the repository"
                .into(),
            log: String::new(),
        });
    }
    let uv = match source {
        Source::Uv => Some(tools::ensure(ctx, &Tool::Uv, &py, "uv.lock", log)?),
        _ => None,
    };
    let requirements = requirements(ctx, source, &project, uv.as_deref(), log)?;
    let (remote, local) = pylock::split_local(&requirements);
    let py_path = quote(&py.path);
    let pip_cache = ctx
        .pip_cache
        .as_ref()
        .map(|c| ctx.jail.inside(c).display().to_string());
    let uv_cache = pip_cache.as_ref().map(|c| format!("{c}/uv"));
    let mut env: Vec<(&str, &str)> = vec![
        ("UV_PYTHON_DOWNLOADS", "never"),
        ("UV_LINK_MODE", "copy"),
        ("UV_NO_PROGRESS", "1"),
    ];
    match (&pip_cache, &uv_cache) {
        (Some(pip), Some(uv)) => {
            env.push(("PIP_CACHE_DIR", pip));
            env.push(("UV_CACHE_DIR", uv));
        }
        _ => {
            env.push(("PIP_NO_CACHE_DIR", "1"));
            env.push(("UV_NO_CACHE", "1"));
        }
    }
    let installer = |target: &Path, rest: &str| match &uv {
        Some(uv) => format!(
            "{uv} pip install --python {py_path} --target {} {rest}",
            quote(&ctx.jail.inside(target))
        ),
        None => format!(
            "{py_path} -m pip install --no-compile --no-input --disable-pip-version-check \
             --no-warn-script-location --root-user-action=ignore --target {} {rest}",
            quote(&ctx.jail.inside(target))
        ),
    };
    let tool = if uv.is_some() { "uv" } else { "pip" };

    if pylock::any_requirement(&remote) {
        let platform = python_platform(&py.path)?;
        let key = deps::key(&[
            b"python",
            ctx.req.app.as_str().as_bytes(),
            runtime.version.as_bytes(),
            platform.as_bytes(),
            tool.as_bytes(),
            remote.as_bytes(),
        ]);
        let what = format!("Python dependencies ({})", source.file());
        let cache = ctx.req.settings.cache_dir.as_deref();
        deps::restore_or_install(cache, &what, &key, &dest, log, |log| {
            let req_file = ctx.tmp.join("requirements.slipway.txt");
            std::fs::write(&req_file, &remote)
                .map_err(|e| BuildError::io(format!("writing {}", req_file.display()), e))?;
            let rest = format!("-r {}", quote(&ctx.jail.inside(&req_file)));
            // Exported from a lock, every requirement is there, pinned.
            let rest = if matches!(source, Source::Requirements | Source::Pyproject) {
                rest
            } else {
                format!("--no-deps {rest}")
            };
            let command = installer(&dest, &rest);
            run_step(ctx, &command, &env, true, log)
                .map_err(|f| f.into_dependencies(tool, &command, ctx))?;
            tidy_target(&dest).map_err(|e| BuildError::io("tidying the installed dependencies", e))
        })?;
    } else {
        log.line(format!(
            "no Python dependencies declared (in {})",
            source.file()
        ));
        std::fs::create_dir_all(&dest)
            .map_err(|e| BuildError::io(format!("creating {}", dest.display()), e))?;
    }
    ctx.jail.hand_over(&dest)?;

    if project.is_package || !local.is_empty() {
        install_project(ctx, &project, &local, &dest, &env, &installer, tool, log)?;
    } else if project.exists {
        log.line("the project itself is not a package (no [build-system]): its code runs from the release as it is");
    }
    relocate_scripts(&dest.join("bin"))
        .map_err(|e| BuildError::io("rewriting the shebangs of installed scripts", e))?;
    if std::fs::read_dir(&dest).is_ok_and(|mut d| d.next().is_none()) {
        let _ = std::fs::remove_dir(&dest);
        let _ = std::fs::remove_dir(ctx.src.join(".slipway"));
        return Ok(runtime);
    }
    config
        .run
        .paths
        .insert("PYTHONPATH".into(), vec![PYTHON_DEPS.into()]);
    config
        .run
        .paths
        .insert("PATH".into(), vec![format!("{PYTHON_DEPS}/bin")]);
    Ok(runtime)
}

/// The pinned requirements text of the dependencies.
fn requirements(
    ctx: &Ctx,
    source: Source,
    project: &Project,
    uv: Option<&str>,
    log: &mut Log,
) -> Result<String, BuildError> {
    let read = |name: &str| {
        read_input(&ctx.src, name).map_err(|e| BuildError::io(format!("reading {name}"), e))
    };
    let exported = ctx.tmp.join("exported.slipway.txt");
    let out = quote(&ctx.jail.inside(&exported));
    let py = ctx.interpreter()?;
    let (commands, env): (Vec<String>, Vec<(&str, &str)>) = match source {
        Source::Nothing => return Ok(String::new()),
        Source::Requirements => return read("requirements.txt"),
        Source::Pyproject => return Ok(project.dependencies.join("\n") + "\n"),
        Source::Pipfile => return pylock::pipfile_requirements(&read("Pipfile.lock")?),
        Source::Pdm => return pylock::pdm_requirements(&read("pdm.lock")?),
        Source::Uv => {
            let uv = uv.unwrap_or("uv");
            (
                vec![format!(
                    "{uv} export --locked --no-dev --no-emit-project --no-editable --no-header --no-annotate --format requirements-txt --python {} -o {out}",
                    quote(&py.path)
                )],
                vec![("UV_PYTHON_DOWNLOADS", "never"), ("UV_NO_CACHE", "1")],
            )
        }
        Source::Poetry => {
            let poetry = tools::ensure(ctx, &Tool::Poetry, &py, "poetry.lock", log)?;
            (
                vec![
                    format!("{poetry} check --lock --no-interaction"),
                    format!(
                        "{poetry} export --no-interaction -f requirements.txt --only main -o {out}"
                    ),
                ],
                vec![
                    ("POETRY_VIRTUALENVS_CREATE", "false"),
                    ("POETRY_CACHE_DIR", "/tmp/poetry-cache"),
                ],
            )
        }
    };
    for command in &commands {
        run_step(ctx, command, &env, true, log).map_err(|f| lock_error(f, source, command, ctx))?;
    }
    std::fs::read_to_string(&exported)
        .map_err(|e| BuildError::io(format!("reading what {} exported", source.file()), e))
}

/// A failed export: an out-of-date lockfile named as such.
fn lock_error(f: StepFailure, source: Source, command: &str, ctx: &Ctx) -> BuildError {
    if let StepFailure::Exited { output, .. } = &f {
        let outdated = [
            "needs to be updated",
            "changed significantly since poetry.lock",
            "pyproject.toml changed significantly",
            "Lockfile hash doesn't match",
            "lock file is not up to date",
            "Lock file hash doesn't match",
        ]
        .iter()
        .any(|m| output.contains(m));
        if outdated {
            let fix = match source {
                Source::Uv => "run `uv lock`",
                _ => "run `poetry lock`",
            };
            return BuildError::LockOutdated {
                file: source.file().into(),
                manifest: "pyproject.toml".into(),
                fix: fix.into(),
                log: String::new(),
            };
        }
    }
    let tool = match source {
        Source::Uv => "uv",
        _ => "poetry",
    };
    f.into_dependencies(tool, command, ctx)
}

/// Installs the project (and its workspace members) into `dest`, without
/// dependencies: built from a copy, so the build backend's leftovers
/// (`build/`, `*.egg-info`) stay out of the release; into a directory of
/// its own, merged, so the dependencies' scripts in `bin/` stay.
#[allow(clippy::too_many_arguments)]
fn install_project(
    ctx: &Ctx,
    project: &Project,
    local: &[String],
    dest: &Path,
    env: &[(&str, &str)],
    installer: &dyn Fn(&Path, &str) -> String,
    tool: &str,
    log: &mut Log,
) -> Result<(), BuildError> {
    let copy = ctx.tmp.join("project");
    let staged = ctx.tmp.join("project-installed");
    for d in [&copy, &staged] {
        let _ = std::fs::remove_dir_all(d);
    }
    copy_source(&ctx.src, &copy)
        .map_err(|e| BuildError::io("copying the project to build it", e))?;
    std::fs::create_dir_all(&staged)
        .map_err(|e| BuildError::io(format!("creating {}", staged.display()), e))?;
    ctx.jail.hand_over(&copy)?;
    ctx.jail.hand_over(&staged)?;
    let inside = ctx.jail.inside(&copy);
    let mut what: Vec<String> = Vec::new();
    if project.is_package {
        what.push(quote(&inside));
    }
    for l in local {
        let rel = l.trim_start_matches("file:").trim_start_matches("./");
        what.push(quote(&inside.join(rel)));
    }
    let name = project.name.as_deref().unwrap_or("the project");
    log.line(format!(
        "installing {name} itself (it is a package), without dependencies"
    ));
    let command = installer(&staged, &format!("--no-deps {}", what.join(" ")));
    run_step(ctx, &command, env, true, log)
        .map_err(|f| f.into_dependencies(tool, &command, ctx))?;
    tidy_target(&staged).map_err(|e| BuildError::io("tidying the installed project", e))?;
    merge_into(&staged, dest)
        .map_err(|e| BuildError::io("adding the project to the release", e))?;
    let _ = std::fs::remove_dir_all(&copy);
    let _ = std::fs::remove_dir_all(&staged);
    Ok(())
}

/// The checkout, without what is not source: git, the packer's own
/// output, virtualenvs and bytecode.
fn copy_source(from: &Path, to: &Path) -> std::io::Result<()> {
    const SKIP: &[&str] = &[".git", ".slipway", ".venv", "node_modules", "__pycache__"];
    deps::copy_tree_skipping(from, to, SKIP).map(|_| ())
}

/// Moves everything of `from` into `to`, merging directories (`bin/`).
fn merge_into(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() && target.is_dir() {
            merge_into(&entry.path(), &target)?;
        } else {
            if std::fs::symlink_metadata(&target).is_ok() {
                if target.is_dir() {
                    std::fs::remove_dir_all(&target)?;
                } else {
                    std::fs::remove_file(&target)?;
                }
            }
            std::fs::rename(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// What installers leave that names this build or its time: uv's lock
/// and cache notes, and `direct_url.json` (the path it was installed
/// from), dropped from each `RECORD` too.
pub(super) fn tidy_target(target: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(target.join(".lock"));
    let Ok(entries) = std::fs::read_dir(target) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(".dist-info") {
            continue;
        }
        let mut dropped: Vec<String> = Vec::new();
        for file in ["direct_url.json", "uv_cache.json"] {
            if std::fs::remove_file(entry.path().join(file)).is_ok() {
                dropped.push(format!("{name}/{file},"));
            }
        }
        let record = entry.path().join("RECORD");
        if !dropped.is_empty()
            && let Ok(text) = std::fs::read_to_string(&record)
        {
            let kept: String = text
                .lines()
                .filter(|l| !dropped.iter().any(|d| l.starts_with(d.as_str())))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&record, kept)?;
        }
    }
    Ok(())
}

/// The platform tag wheels are chosen by (`linux-x86_64`).
fn python_platform(python: &Path) -> Result<String, BuildError> {
    let out = std::process::Command::new(python)
        .args(["-c", "import sysconfig; print(sysconfig.get_platform())"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| BuildError::Toolchain {
            build_type: BuildType::Python,
            tool: python.display().to_string(),
            error: e.to_string(),
            log: String::new(),
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// pip writes console scripts with the build machine's interpreter in the
/// shebang (`#!/root/.pyenv/versions/3.11.7/bin/python3.11`); the release
/// must run on the host's `python3` wherever it is.
pub(super) fn relocate_scripts(bin: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(bin) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let path = entry.path();
        let bytes = std::fs::read(&path)?;
        let Some(rest) = bytes.strip_prefix(b"#!") else {
            continue;
        };
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let interpreter = String::from_utf8_lossy(&rest[..end]);
        let program = interpreter.split_whitespace().next().unwrap_or("");
        let name = program.rsplit('/').next().unwrap_or("");
        if program.starts_with('/') && name.starts_with("python") {
            let mut fixed = b"#!/usr/bin/env python3".to_vec();
            fixed.extend_from_slice(&rest[end..]);
            std::fs::write(&path, fixed)?;
        }
    }
    Ok(())
}

/// A path as one shell word.
pub(super) fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
