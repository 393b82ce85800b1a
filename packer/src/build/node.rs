//! The `node` build type: the project's own package manager (npm, pnpm,
//! Yarn classic or Berry, Bun — `nodepm.rs` says which), a frozen install
//! from its lockfile cached by that lockfile, the `build` script when there
//! is one, then the dev dependencies pruned from the release.

use std::collections::BTreeMap;
use std::path::Path;

use deploy::Runtime;

use super::interp::Pin;
use super::nodepm::{self, Manager, Pm};
use super::step::StepFailure;
use super::tools;
use super::{Ctx, run_step};
use crate::config::SlipwayToml;
use crate::input::read_input;
use crate::log::Log;
use crate::{BuildError, deps};

/// What `package.json` says that the build needs.
#[derive(serde::Deserialize, Default)]
pub(crate) struct Package {
    #[serde(default)]
    pub dependencies: BTreeMap<String, serde_json::Value>,
    #[serde(default, rename = "devDependencies")]
    pub dev_dependencies: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub scripts: BTreeMap<String, serde_json::Value>,
    #[serde(default, rename = "packageManager")]
    pub package_manager: Option<String>,
    #[serde(default)]
    pub engines: BTreeMap<String, serde_json::Value>,
}

/// `package.json`, parsed, and its text; a clear error when it is missing
/// or not JSON.
pub(crate) fn read_package(src: &Path) -> Result<(Package, String), BuildError> {
    let text = match read_input(src, "package.json") {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(crate::ConfigError::invalid(
                Some("type"),
                None,
                "a node build needs package.json at the repository root",
            )
            .into());
        }
        Err(e) => return Err(BuildError::io("reading package.json", e)),
    };
    let parsed: Package = serde_json::from_str(&text).map_err(|e| BuildError::BadEntry {
        path: "package.json".into(),
        reason: format!("invalid JSON at line {}: {e}", e.line()),
        log: String::new(),
    })?;
    Ok((parsed, text))
}

/// `engines.node`, as an interpreter range.
pub(crate) fn engines_range(src: &Path) -> Result<Option<Pin>, BuildError> {
    let (package, _) = read_package(src)?;
    Ok(package
        .engines
        .get("node")
        .and_then(|v| v.as_str())
        .map(|spec| Pin {
            spec: spec.to_string(),
            source: "package.json engines.node".into(),
        }))
}

pub(super) fn build(
    ctx: &Ctx,
    config: &mut SlipwayToml,
    log: &mut Log,
) -> Result<Runtime, BuildError> {
    let (parsed, text) = read_package(&ctx.src)?;
    let node = ctx.interpreter()?;
    let runtime = node.runtime();
    log.line(format!("runtime: {runtime}"));
    // Express and most frameworks switch to their production behaviour on
    // this; an app that sets it itself wins.
    config
        .run
        .env
        .entry("NODE_ENV".into())
        .or_insert_with(|| "production".into());
    config
        .run
        .paths
        .insert("PATH".into(), vec!["node_modules/.bin".into()]);

    let pm = nodepm::detect(&ctx.src, &parsed)?;
    log.line(format!("package manager: {}", pm.describe()));
    let has_build = parsed.scripts.contains_key("build");
    if parsed.dependencies.is_empty() && (parsed.dev_dependencies.is_empty() || !has_build) {
        log.line("no dependencies to install");
        return Ok(runtime);
    }
    let dest = ctx.src.join("node_modules");
    if dest.exists() {
        return Err(BuildError::BadEntry {
            path: "node_modules".into(),
            reason: "the packer installs the dependencies here; remove it from the repository"
                .into(),
            log: String::new(),
        });
    }
    let program = match pm.tool() {
        None => pm.committed_command(),
        Some(tool) => {
            if !tools::valid_version(tool.version()) {
                return Err(BuildError::PackageManager {
                    tool: tool.label(),
                    source_file: pm.source.clone(),
                    reason: "that is not a version number".into(),
                    log: String::new(),
                });
            }
            Some(tools::ensure(ctx, &tool, &node, &pm.source, log)?)
        }
    }
    .unwrap_or_else(|| "npm".into());
    let cache = ctx
        .npm_cache
        .as_ref()
        .map(|c| ctx.jail.inside(c).display().to_string())
        .unwrap_or_else(|| "/tmp/npm-cache".into());
    let env_owned = pm.env(&cache);
    let mut env: Vec<(&str, &str)> = vec![
        ("npm_config_update_notifier", "false"),
        ("npm_config_fund", "false"),
        ("npm_config_audit", "false"),
        ("npm_config_cache", cache.as_str()),
    ];
    env.extend(env_owned.iter().map(|(k, v)| (*k, v.as_str())));

    let scope = if has_build { "all" } else { "production" };
    let install = pm.install_command(&program, !has_build);
    if pm.lock.is_none() {
        log.line(format!(
            "warning: no lockfile: {} resolves versions anew, so builds of one commit may differ; commit {}",
            pm.manager.name(),
            pm.manager.lockfile()
        ));
    }
    let lock_bytes = pm.lock.as_ref().map(|(_, b)| b.as_slice()).unwrap_or(b"");
    let key = deps::key(&[
        b"node",
        ctx.req.app.as_str().as_bytes(),
        runtime.version.as_bytes(),
        std::env::consts::ARCH.as_bytes(),
        install.as_bytes(),
        scope.as_bytes(),
        text.as_bytes(),
        lock_bytes,
    ]);
    let what = format!("{} dependencies ({scope})", pm.manager.name());
    let cache_dir = ctx.req.settings.cache_dir.as_deref();
    deps::restore_or_install(cache_dir, &what, &key, &dest, log, |log| {
        run_step(ctx, &install, &env, true, log).map_err(|f| install_error(f, &pm, &install, ctx))
    })?;
    ctx.jail.hand_over(&dest)?;
    if has_build {
        // The app's own build script: a build step, not a dependency step,
        // so it reaches the network only when build steps do.
        let command = format!("{program} run build");
        run_step(ctx, &command, &env, ctx.jail.build_network(), log)
            .map_err(|f| f.into_error(&command, ctx))?;
        let command = pm.prune_command(&program);
        // Yarn and Bun prune by installing again, from their cache.
        let network = !matches!(pm.manager, Manager::Npm | Manager::Pnpm);
        run_step(ctx, &command, &env, network, log).map_err(|f| f.into_error(&command, ctx))?;
    }
    nodepm::tidy(&dest).map_err(|e| BuildError::io("tidying node_modules", e))?;
    Ok(runtime)
}

/// A failed install: an out-of-date lockfile named as such.
fn install_error(f: StepFailure, pm: &Pm, command: &str, ctx: &Ctx) -> BuildError {
    if let StepFailure::Exited { output, .. } = &f
        && nodepm::OUTDATED.iter().any(|m| output.contains(m))
    {
        return BuildError::LockOutdated {
            file: pm
                .lock
                .as_ref()
                .map_or(pm.manager.lockfile(), |(name, _)| name.as_str())
                .to_string(),
            manifest: "package.json".into(),
            fix: format!("run `{} install`", pm.manager.name()),
            log: String::new(),
        };
    }
    f.into_dependencies(pm.manager.name(), command, ctx)
}
