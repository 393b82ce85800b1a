//! Which package manager a Node project uses, and how each installs
//! frozen, builds and prunes. corepack's `packageManager` field in
//! `package.json` wins; then the lockfile: `pnpm-lock.yaml` → pnpm,
//! `yarn.lock` → Yarn (classic for a v1 lockfile, Berry otherwise, or the
//! release committed at `.yarnrc.yml`'s `yarnPath`), `bun.lock`/`bun.lockb`
//! → Bun, `package-lock.json`/`npm-shrinkwrap.json` → npm; else npm.

use std::path::Path;

use super::node::Package;
use super::tools::{self, Tool};
use crate::BuildError;
use crate::input::read_input_bytes;

/// Output that says a frozen install refused an out-of-date lockfile.
pub(crate) const OUTDATED: &[&str] = &[
    "can only install packages when your package.json and package-lock.json",
    "ERR_PNPM_OUTDATED_LOCKFILE",
    "Your lockfile needs to be updated",
    "The lockfile would have been modified by this install",
    "lockfile had changes, but lockfile is frozen",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manager {
    Npm,
    Pnpm,
    YarnClassic,
    YarnBerry,
    Bun,
}

impl Manager {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Manager::Npm => "npm",
            Manager::Pnpm => "pnpm",
            Manager::YarnClassic | Manager::YarnBerry => "yarn",
            Manager::Bun => "bun",
        }
    }

    /// The lockfile it writes.
    pub(crate) fn lockfile(self) -> &'static str {
        match self {
            Manager::Npm => "package-lock.json",
            Manager::Pnpm => "pnpm-lock.yaml",
            Manager::YarnClassic | Manager::YarnBerry => "yarn.lock",
            Manager::Bun => "bun.lock",
        }
    }
}

/// A project's package manager, at the version it runs.
#[derive(Debug, Clone)]
pub(crate) struct Pm {
    pub manager: Manager,
    /// `None` for npm: the machine's own, which comes with Node.
    pub version: Option<String>,
    /// What chose it (`package.json packageManager`, `pnpm-lock.yaml`).
    pub source: String,
    /// The lockfile's name and bytes.
    pub lock: Option<(String, Vec<u8>)>,
    /// Berry's committed release (`.yarnrc.yml` `yarnPath`).
    pub yarn_path: Option<String>,
}

impl Pm {
    pub(crate) fn describe(&self) -> String {
        let version = self
            .version
            .as_deref()
            .map(|v| format!("@{v}"))
            .unwrap_or_default();
        let kind = match self.manager {
            Manager::YarnClassic => " (classic)",
            Manager::YarnBerry => " (berry)",
            _ => "",
        };
        let lock = match &self.lock {
            Some((name, _)) => format!("frozen install from {name}"),
            None => "no lockfile".into(),
        };
        format!(
            "{}{version}{kind}, from {}; {lock}",
            self.manager.name(),
            self.source
        )
    }

    /// The tool to install, when the machine's npm is not it.
    pub(crate) fn tool(&self) -> Option<Tool> {
        let v = self.version.clone()?;
        match self.manager {
            Manager::Npm => None,
            Manager::Pnpm => Some(Tool::Pnpm(v)),
            Manager::YarnClassic | Manager::YarnBerry if self.yarn_path.is_some() => None,
            Manager::YarnClassic | Manager::YarnBerry => Some(Tool::Yarn(v)),
            Manager::Bun => Some(Tool::Bun(v)),
        }
    }

    /// A Yarn release the repository carries itself (steps run at the
    /// checkout's root).
    pub(crate) fn committed_command(&self) -> Option<String> {
        self.yarn_path
            .as_ref()
            .map(|p| format!("node {}", super::python::quote(Path::new(p))))
    }

    /// Settings through the environment, so the project's own rc files
    /// still apply otherwise: caches inside the app's cache, no telemetry,
    /// and Berry's plain `node_modules` rather than Plug'n'Play.
    pub(crate) fn env(&self, cache: &str) -> Vec<(&'static str, String)> {
        match self.manager {
            Manager::Npm | Manager::Pnpm => vec![],
            Manager::YarnClassic => vec![("YARN_CACHE_FOLDER", format!("{cache}/yarn"))],
            Manager::YarnBerry => vec![
                ("YARN_CACHE_FOLDER", format!("{cache}/yarn-berry")),
                ("YARN_ENABLE_GLOBAL_CACHE", "false".into()),
                ("YARN_ENABLE_TELEMETRY", "0".into()),
                ("YARN_NODE_LINKER", "node-modules".into()),
                (
                    "YARN_ENABLE_IMMUTABLE_INSTALLS",
                    self.lock.is_some().to_string(),
                ),
            ],
            Manager::Bun => vec![("BUN_INSTALL_CACHE_DIR", format!("{cache}/bun"))],
        }
    }

    /// The frozen install, only production dependencies when `production`.
    pub(crate) fn install_command(&self, program: &str, production: bool) -> String {
        let locked = self.lock.is_some();
        match self.manager {
            Manager::Npm => {
                let base = if locked { "npm ci" } else { "npm install" };
                if production {
                    format!("{base} --omit=dev")
                } else {
                    base.into()
                }
            }
            Manager::Pnpm => format!(
                "{program} install {} --config.package-import-method=copy --config.confirmModulesPurge=false --store-dir \"$npm_config_cache/pnpm-store\"{}",
                if locked {
                    "--frozen-lockfile"
                } else {
                    "--no-frozen-lockfile"
                },
                if production { " --prod" } else { "" }
            ),
            Manager::YarnClassic => format!(
                "{program} install --non-interactive --no-progress{}{}",
                if locked { " --frozen-lockfile" } else { "" },
                if production { " --production" } else { "" }
            ),
            Manager::YarnBerry if production => {
                format!("{program} workspaces focus --all --production")
            }
            Manager::YarnBerry => format!("{program} install"),
            Manager::Bun => format!(
                "{program} install{}{}",
                if locked { " --frozen-lockfile" } else { "" },
                if production { " --production" } else { "" }
            ),
        }
    }

    /// After the build script: the dev dependencies out.
    pub(crate) fn prune_command(&self, program: &str) -> String {
        match self.manager {
            Manager::Npm => "npm prune --omit=dev".into(),
            Manager::Pnpm => format!(
                "{program} prune --prod --config.confirmModulesPurge=false --store-dir \"$npm_config_cache/pnpm-store\""
            ),
            Manager::YarnClassic => {
                format!("{} --prefer-offline", self.install_command(program, true))
            }
            Manager::YarnBerry => self.install_command(program, true),
            Manager::Bun => format!(
                "rm -rf node_modules && {}",
                self.install_command(program, true)
            ),
        }
    }
}

fn optional(src: &Path, name: &str) -> Result<Option<Vec<u8>>, BuildError> {
    match read_input_bytes(src, name) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BuildError::io(format!("reading {name}"), e)),
    }
}

/// The package manager of the project at `src`.
pub(crate) fn detect(src: &Path, package: &Package) -> Result<Pm, BuildError> {
    let mut found: Option<(Manager, Option<String>, String)> = None;
    if let Some(field) = &package.package_manager {
        // `pnpm@9.15.0+sha512.…`: corepack's hash is not checked here.
        let (name, rest) = field.split_once('@').unwrap_or((field.as_str(), ""));
        let version = rest.split('+').next().unwrap_or("").to_string();
        let source = "package.json packageManager".to_string();
        if !tools::valid_version(&version) {
            return Err(BuildError::PackageManager {
                tool: field.clone(),
                source_file: source,
                reason: "give it as name@version, such as \"pnpm@9.15.9\"".into(),
                log: String::new(),
            });
        }
        let manager = match name {
            "npm" => Manager::Npm,
            "pnpm" => Manager::Pnpm,
            "yarn" if version.starts_with("1.") => Manager::YarnClassic,
            "yarn" => Manager::YarnBerry,
            "bun" => Manager::Bun,
            other => {
                return Err(BuildError::PackageManager {
                    tool: other.to_string(),
                    source_file: source,
                    reason: "packer knows npm, pnpm, yarn and bun".into(),
                    log: String::new(),
                });
            }
        };
        found = Some((manager, Some(version), source));
    }
    let locks: &[(&str, Manager)] = &[
        ("pnpm-lock.yaml", Manager::Pnpm),
        ("yarn.lock", Manager::YarnClassic),
        ("bun.lock", Manager::Bun),
        ("bun.lockb", Manager::Bun),
        ("package-lock.json", Manager::Npm),
        ("npm-shrinkwrap.json", Manager::Npm),
    ];
    let mut lock = None;
    for (name, manager) in locks {
        let belongs = match &found {
            Some((m, _, _)) => m.name() == manager.name(),
            None => true,
        };
        if !belongs {
            continue;
        }
        if let Some(bytes) = optional(src, name)? {
            let mut manager = *manager;
            if manager == Manager::YarnClassic && !is_yarn_v1(&bytes) {
                manager = Manager::YarnBerry;
            }
            if found.is_none() {
                found = Some((manager, None, (*name).to_string()));
            }
            lock = Some(((*name).to_string(), bytes));
            break;
        }
    }
    let (manager, version, source) =
        found.unwrap_or((Manager::Npm, None, "the default (no lockfile)".into()));
    let yarn_path = if manager == Manager::YarnBerry {
        committed_yarn(src)?
    } else {
        None
    };
    let version = match (manager, version) {
        (Manager::Npm, _) => None,
        (_, Some(v)) => Some(v),
        (Manager::Pnpm, None) => Some(pnpm_for(lock.as_ref().map(|(_, b)| b.as_slice()))),
        (Manager::YarnClassic, None) => Some(tools::YARN_CLASSIC.into()),
        (Manager::YarnBerry, None) => Some(tools::YARN_BERRY.into()),
        (Manager::Bun, None) => Some(tools::BUN.into()),
    };
    Ok(Pm {
        manager,
        version,
        source,
        lock,
        yarn_path,
    })
}

fn is_yarn_v1(lock: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&lock[..lock.len().min(400)]);
    head.contains("yarn lockfile v1") || !head.contains("__metadata")
}

/// The pnpm that writes a lockfile of this version.
fn pnpm_for(lock: Option<&[u8]>) -> String {
    let text = lock.map(String::from_utf8_lossy).unwrap_or_default();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("lockfileVersion:"))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
        .unwrap_or_default();
    match version.split('.').next().unwrap_or("") {
        "5" => "7.33.7".into(),
        "6" => "8.15.9".into(),
        _ => tools::PNPM.into(),
    }
}

/// `.yarnrc.yml`'s `yarnPath`, when it names a file of the repository.
fn committed_yarn(src: &Path) -> Result<Option<String>, BuildError> {
    let Some(bytes) = optional(src, ".yarnrc.yml")? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some(path) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("yarnPath:"))
    else {
        return Ok(None);
    };
    let path = path.trim().trim_matches(['\'', '"']);
    let p = Path::new(path);
    let inside = !p.is_absolute()
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if !inside || !std::fs::symlink_metadata(src.join(p)).is_ok_and(|m| m.is_file()) {
        return Err(BuildError::PackageManager {
            tool: format!("yarn ({path})"),
            source_file: ".yarnrc.yml yarnPath".into(),
            reason: "it must name a file committed in the repository".into(),
            log: String::new(),
        });
    }
    Ok(Some(path.to_string()))
}

/// What installs leave that names this build or its time.
pub(crate) fn tidy(node_modules: &Path) -> std::io::Result<()> {
    // pnpm's state: when it last pruned, and where its store was.
    match std::fs::remove_file(node_modules.join(".modules.yaml")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(json: &str) -> Package {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_package_manager_field_wins_then_the_lockfile_decides() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pm = |json: &str| detect(d, &package(json)).unwrap();
        assert_eq!(pm("{}").manager, Manager::Npm);
        std::fs::write(d.join("yarn.lock"), "# yarn lockfile v1\n").unwrap();
        let yarn = pm("{}");
        assert_eq!(
            (yarn.manager, yarn.version.as_deref()),
            (Manager::YarnClassic, Some(tools::YARN_CLASSIC))
        );
        std::fs::write(d.join("yarn.lock"), "__metadata:\n  version: 8\n").unwrap();
        assert_eq!(pm("{}").manager, Manager::YarnBerry);
        std::fs::write(d.join("pnpm-lock.yaml"), "lockfileVersion: '6.0'\n").unwrap();
        let pnpm = pm("{}");
        assert_eq!(
            (pnpm.manager, pnpm.version.as_deref()),
            (Manager::Pnpm, Some("8.15.9"))
        );
        assert_eq!(pnpm.lock.as_ref().unwrap().0, "pnpm-lock.yaml");
        let bun = pm(r#"{"packageManager": "bun@1.1.0"}"#);
        assert_eq!(
            (bun.manager, bun.version.as_deref()),
            (Manager::Bun, Some("1.1.0"))
        );
        assert!(bun.lock.is_none(), "pnpm's lockfile is not bun's");
        let pinned = pm(r#"{"packageManager": "pnpm@9.1.0+sha512.abc"}"#);
        assert_eq!(pinned.version.as_deref(), Some("9.1.0"));
        assert_eq!(pinned.source, "package.json packageManager");
        let e = detect(
            d,
            &package(r#"{"packageManager": "pnpm@latest; rm -rf /"}"#),
        )
        .unwrap_err();
        assert!(e.to_string().contains("packageManager"), "{e}");
        let e = detect(d, &package(r#"{"packageManager": "cargo@1.0.0"}"#)).unwrap_err();
        assert!(e.to_string().contains("npm, pnpm, yarn and bun"), "{e}");
    }

    #[test]
    fn installs_are_frozen_and_production_only_when_nothing_is_built() {
        let pm = Pm {
            manager: Manager::Pnpm,
            version: Some("9.15.9".into()),
            source: "pnpm-lock.yaml".into(),
            lock: Some(("pnpm-lock.yaml".into(), vec![])),
            yarn_path: None,
        };
        let c = pm.install_command("pnpm", true);
        assert!(
            c.contains("--frozen-lockfile") && c.ends_with("--prod"),
            "{c}"
        );
        let yarn = Pm {
            manager: Manager::YarnClassic,
            ..pm.clone()
        };
        let c = yarn.install_command("yarn", false);
        assert!(
            c.contains("--frozen-lockfile") && !c.contains("--production"),
            "{c}"
        );
        let npm = Pm {
            manager: Manager::Npm,
            lock: None,
            ..pm
        };
        assert_eq!(npm.install_command("npm", true), "npm install --omit=dev");
    }

    #[test]
    fn a_yarn_path_outside_the_repository_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".yarnrc.yml"),
            "yarnPath: ../../usr/bin/yarn.js\n",
        )
        .unwrap();
        let e = committed_yarn(dir.path()).unwrap_err().to_string();
        assert!(e.contains("yarnPath") && e.contains("committed"), "{e}");
        std::fs::create_dir_all(dir.path().join(".yarn/releases")).unwrap();
        std::fs::write(dir.path().join(".yarn/releases/yarn-4.9.2.cjs"), "").unwrap();
        std::fs::write(
            dir.path().join(".yarnrc.yml"),
            "yarnPath: .yarn/releases/yarn-4.9.2.cjs\n",
        )
        .unwrap();
        assert_eq!(
            committed_yarn(dir.path()).unwrap().as_deref(),
            Some(".yarn/releases/yarn-4.9.2.cjs")
        );
    }
}
