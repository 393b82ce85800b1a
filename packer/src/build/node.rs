//! The `node` build type: `npm ci` (or `npm install`), `npm run build` when
//! there is a build script, then the dev dependencies pruned.

use std::collections::BTreeMap;

use deploy::{BuildType, Runtime, RuntimeKind};

use super::{Ctx, run_step, runtime_of};
use crate::config::SlipwayToml;
use crate::input::read_input;
use crate::log::Log;
use crate::{BuildError, deps};

pub(super) fn build(
    ctx: &Ctx,
    config: &mut SlipwayToml,
    log: &mut Log,
) -> Result<Runtime, BuildError> {
    let text = match read_input(&ctx.src, "package.json") {
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
    #[derive(serde::Deserialize)]
    struct Package {
        #[serde(default)]
        dependencies: BTreeMap<String, serde_json::Value>,
        #[serde(default, rename = "devDependencies")]
        dev_dependencies: BTreeMap<String, serde_json::Value>,
        #[serde(default)]
        scripts: BTreeMap<String, serde_json::Value>,
    }
    let parsed: Package = serde_json::from_str(&text).map_err(|e| BuildError::BadEntry {
        path: "package.json".into(),
        reason: format!("invalid JSON at line {}: {e}", e.line()),
        log: String::new(),
    })?;
    let runtime = runtime_of(BuildType::Node, RuntimeKind::Node)?;
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

    let has_build = parsed.scripts.contains_key("build");
    if parsed.dependencies.is_empty() && (parsed.dev_dependencies.is_empty() || !has_build) {
        log.line("no npm dependencies to install");
    } else {
        let dest = ctx.src.join("node_modules");
        if dest.exists() {
            return Err(BuildError::BadEntry {
                path: "node_modules".into(),
                reason: "the packer installs npm dependencies here; remove it from the repository"
                    .into(),
                log: String::new(),
            });
        }
        let mut lock = None;
        for name in ["package-lock.json", "npm-shrinkwrap.json"] {
            match read_input(&ctx.src, name) {
                Ok(text) => {
                    lock = Some((name, text.into_bytes()));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BuildError::io(format!("reading {name}"), e)),
            }
        }
        let (tool, lock_bytes) = match &lock {
            Some((name, bytes)) => {
                log.line(format!("{name} found: npm ci"));
                ("npm ci", bytes.as_slice())
            }
            None => {
                log.line("warning: no package-lock.json: npm install resolves versions anew, so builds of one commit may differ; commit a lockfile");
                ("npm install", text.as_bytes())
            }
        };
        let (scope, omit) = if has_build {
            ("all", "")
        } else {
            ("production", " --omit=dev")
        };
        let key = deps::key(&[
            b"node",
            ctx.req.app.as_str().as_bytes(),
            runtime.version.as_bytes(),
            std::env::consts::ARCH.as_bytes(),
            tool.as_bytes(),
            scope.as_bytes(),
            text.as_bytes(),
            lock_bytes,
        ]);
        let npm_cache = ctx
            .npm_cache
            .as_ref()
            .map(|c| ctx.jail.inside(c).display().to_string());
        let mut env = vec![
            ("npm_config_update_notifier", "false"),
            ("npm_config_fund", "false"),
            ("npm_config_audit", "false"),
        ];
        if let Some(dir) = &npm_cache {
            env.push(("npm_config_cache", dir.as_str()));
        }
        let what = format!("npm dependencies ({scope})");
        let cache = ctx.req.settings.cache_dir.as_deref();
        deps::restore_or_install(cache, &what, &key, &dest, log, |log| {
            let command = format!("{tool}{omit}");
            run_step(ctx, &command, &env, true, log)
                .map_err(|f| f.into_dependencies("npm", &command, ctx))
        })?;
        ctx.jail.hand_over(&dest)?;
        if has_build {
            // The app's own build script: a build step, not a dependency
            // step, so it reaches the network only when build steps do.
            let command = "npm run build";
            run_step(ctx, command, &env, ctx.jail.build_network(), log)
                .map_err(|f| f.into_error(command, ctx))?;
            let command = "npm prune --omit=dev";
            run_step(ctx, command, &env, false, log).map_err(|f| f.into_error(command, ctx))?;
        }
    }
    Ok(runtime)
}
