//! The `python` build type: dependencies installed by pip into the release,
//! scripts made to run on the host's `python3`.

use std::path::Path;

use deploy::{BuildType, Runtime, RuntimeKind};

use super::{Ctx, run_step, runtime_of};
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
    let runtime = runtime_of(BuildType::Python, RuntimeKind::Python)?;
    log.line(format!("runtime: {runtime}"));
    let Some((source, requirements)) = python_requirements(&ctx.src)? else {
        log.line("no Python dependencies declared (no requirements.txt, no [project] dependencies in pyproject.toml)");
        return Ok(runtime);
    };
    let dest = ctx.src.join(PYTHON_DEPS);
    if dest.exists() {
        return Err(BuildError::BadEntry {
            path: PYTHON_DEPS.into(),
            reason: "the packer installs Python dependencies here; remove it from the repository"
                .into(),
            log: String::new(),
        });
    }
    let platform = python_platform()?;
    let key = deps::key(&[
        b"python",
        ctx.req.app.as_str().as_bytes(),
        runtime.version.as_bytes(),
        platform.as_bytes(),
        requirements.as_bytes(),
    ]);
    let what = format!("Python dependencies ({source})");
    let cache = ctx.req.settings.cache_dir.as_deref();
    deps::restore_or_install(cache, &what, &key, &dest, log, |log| {
        let req_file = ctx.tmp.join("requirements.slipway.txt");
        std::fs::write(&req_file, &requirements)
            .map_err(|e| BuildError::io(format!("writing {}", req_file.display()), e))?;
        let command = format!(
            "python3 -m pip install --no-compile --no-input --disable-pip-version-check \
             --no-warn-script-location --root-user-action=ignore --target {} -r {}",
            quote(&ctx.jail.inside(&dest)),
            quote(&ctx.jail.inside(&req_file))
        );
        let pip_cache = ctx
            .pip_cache
            .as_ref()
            .map(|c| ctx.jail.inside(c).display().to_string());
        let env: Vec<(&str, &str)> = match &pip_cache {
            Some(dir) => vec![("PIP_CACHE_DIR", dir.as_str())],
            None => vec![("PIP_NO_CACHE_DIR", "1")],
        };
        run_step(ctx, &command, &env, true, log)
            .map_err(|f| f.into_dependencies("pip", &command, ctx))?;
        relocate_scripts(&dest.join("bin"))
            .map_err(|e| BuildError::io("rewriting the shebangs of installed scripts", e))
    })?;
    ctx.jail.hand_over(&dest)?;
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

/// The declared dependencies, as requirements-file text, and where they
/// came from; `None` when there are none.
fn python_requirements(src: &Path) -> Result<Option<(&'static str, String)>, BuildError> {
    match read_input(src, "requirements.txt") {
        Ok(text) => {
            let any = text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .any(|l| !l.is_empty());
            return Ok(any.then_some(("requirements.txt", text)));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(BuildError::io("reading requirements.txt", e)),
    }
    let text = match read_input(src, "pyproject.toml") {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BuildError::io("reading pyproject.toml", e)),
    };
    #[derive(serde::Deserialize)]
    struct PyProject {
        project: Option<Project>,
    }
    #[derive(serde::Deserialize)]
    struct Project {
        #[serde(default)]
        dependencies: Vec<String>,
    }
    let parsed: PyProject = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        BuildError::BadEntry {
            path: "pyproject.toml".into(),
            reason: match line {
                Some(l) => format!("invalid TOML at line {l}: {}", e.message()),
                None => format!("invalid TOML: {}", e.message()),
            },
            log: String::new(),
        }
    })?;
    let deps = parsed.project.map(|p| p.dependencies).unwrap_or_default();
    if deps.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        "pyproject.toml [project] dependencies",
        deps.join("\n") + "\n",
    )))
}

/// The platform tag wheels are chosen by (`linux-x86_64`).
fn python_platform() -> Result<String, BuildError> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_platform())"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| BuildError::Toolchain {
            build_type: BuildType::Python,
            tool: "python3".into(),
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
