//! One build: checkout, `slipway.toml`, the build type's steps, pack.
//!
//! - `python`: dependencies from `requirements.txt` (or `[project]
//!   dependencies` in `pyproject.toml`) installed by pip into
//!   `.slipway/python`, which the release puts on `PYTHONPATH` and whose
//!   `bin/` goes on `PATH`; script shebangs are rewritten to
//!   `/usr/bin/env python3`, so nothing in the release names the build
//!   machine's paths.
//! - `node`: `npm ci` (or `npm install` without a lockfile) into
//!   `node_modules`, dev dependencies left out; with a `build` script, all
//!   dependencies, `npm run build`, then `npm prune --omit=dev`.
//! - `generic`: only `[build] command`.
//!
//! `[build] command`, when set, runs after the dependencies. Every command
//! shares the build's one deadline (`[build] timeout`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deploy::{AppName, BuildType, Manifest, RuntimeKind, Sha256, Timestamp, Version};

use crate::config::SlipwayToml;
use crate::log::{Log, LogSink};
use crate::sandbox::{Jail, SandboxKind};

mod interp;
mod node;
mod nodepm;
mod pylock;
mod python;
mod step;
mod tools;

#[cfg(test)]
mod tests;

use crate::{BuildError, Settings, git, pack};
use step::run_step;

/// What to build, and where.
#[derive(Debug, Clone, Copy)]
pub struct BuildRequest<'a> {
    pub app: &'a AppName,
    /// Any URL libgit2 fetches from: a path, `file://`, `git://`,
    /// `http(s)://`, `ssh://`.
    pub git_url: &'a str,
    /// The full hex sha of the commit to build (see [`crate::resolve_ref`]).
    pub commit: &'a str,
    /// The subdirectory to build as the project (an app in a monorepo);
    /// the whole repository when `None`.
    pub root: Option<&'a deploy::AppRoot>,
    pub version: &'a Version,
    /// Scratch space, owned by the caller, which may remove it afterwards.
    pub work_dir: &'a Path,
    /// Where the tarball goes.
    pub out_dir: &'a Path,
    /// Credentials and the cache directory.
    pub settings: &'a Settings,
    /// Receives the build log as it is written (lines, and command output
    /// line by line as it is printed), to show a running build.
    pub log_sink: Option<&'a LogSink>,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// `<out_dir>/<app>-<version>.tar.gz`.
    pub artifact_path: PathBuf,
    pub sha256: Sha256,
    /// Bytes of the tarball.
    pub size: u64,
    /// The manifest packed as `.slipway/manifest.json`.
    pub manifest: Manifest,
    pub build_type: BuildType,
    /// The signature over app, version and sha256, when the settings hold
    /// a signing key.
    pub signature: Option<deploy::signing::Signature>,
    /// What happened, build command output included.
    pub log: String,
    /// The commit's author, `Name <email>`.
    pub author: Option<String>,
    /// The first line of the commit's message (at most 200 characters).
    pub message: Option<String>,
    /// `[build] watch`: repository paths outside the root whose changes
    /// rebuild the app.
    pub watch: Vec<String>,
    /// The release's file index beside the artifact; `None` when the tree
    /// has a path the index cannot name (the log says why), so hosts
    /// always download the whole artifact.
    pub index: Option<BuiltIndex>,
}

/// A release's file index (`deploy::index`), as written and signed.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    /// `<out_dir>/<app>-<version>.index.json`.
    pub path: PathBuf,
    /// Of the file's bytes.
    pub sha256: Sha256,
    pub size: u64,
    /// Over app, version and `sha256` under the index prefix, when the
    /// settings hold a signing key.
    pub signature: Option<deploy::signing::Signature>,
}

/// Builds `req.commit` of `req.git_url` into `req.out_dir`. Blocking.
///
/// The manifest's `built_at` is the commit's time, not the wall clock, so
/// the same commit and version always give the same bytes.
#[tracing::instrument(skip_all, fields(app = %req.app, version = %req.version))]
pub fn build(req: &BuildRequest) -> Result<BuildOutput, BuildError> {
    let mut log = Log::new(req.log_sink.cloned());
    match run(req, &mut log) {
        Ok(out) => Ok(out),
        Err(e) => {
            tracing::warn!(error = %e, "build failed");
            let sink = log.sink().cloned();
            let e = e.with_log(log.into_text());
            if let Some(sink) = sink {
                sink.send(format!("error: {e}\n"));
            }
            Err(e)
        }
    }
}

/// One build's running state: what every step needs.
struct Ctx<'a> {
    req: &'a BuildRequest<'a>,
    /// The checkout, which becomes the release.
    src: PathBuf,
    /// The build's own `/tmp` (outside path).
    tmp: PathBuf,
    /// When the build's commands must have finished.
    deadline: Instant,
    /// `[build] timeout`, for messages.
    timeout: Duration,
    /// Where the build's commands run.
    jail: Jail,
    /// The app's own pip and npm download caches (outside paths), when the
    /// packer keeps a cache.
    pip_cache: Option<PathBuf>,
    npm_cache: Option<PathBuf>,
    /// The interpreter chosen for a python or node build.
    interp: Option<interp::Interpreter>,
    /// The shared package-manager installs (outside path), seen read-only
    /// at `/cache/tools`, when the packer keeps a cache.
    tools_dir: Option<PathBuf>,
}

impl Ctx<'_> {
    /// The interpreter the build chose (python and node builds).
    fn interpreter(&self) -> Result<interp::Interpreter, BuildError> {
        self.interp.clone().ok_or_else(|| BuildError::Toolchain {
            build_type: BuildType::Python,
            tool: "python3".into(),
            error: "no interpreter was chosen".into(),
            log: String::new(),
        })
    }
}

fn run(req: &BuildRequest, log: &mut Log) -> Result<BuildOutput, BuildError> {
    let git_dir = req.work_dir.join("git");
    let src = req.work_dir.join("release");
    let tmp = req.work_dir.join("tmp");
    for dir in [&git_dir, &src, &tmp] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| BuildError::io(format!("clearing {}", dir.display()), e))?;
        }
    }
    for dir in [&src, &tmp] {
        std::fs::create_dir_all(dir)
            .map_err(|e| BuildError::io(format!("creating {}", dir.display()), e))?;
    }
    // Each app has download caches of its own: a build cannot poison what
    // another app's build installs.
    let caches = req.settings.cache_dir.as_ref().map(|c| {
        (
            c.join("pip").join(req.app.as_str()),
            c.join("npm").join(req.app.as_str()),
        )
    });
    let mut mounts: Vec<(PathBuf, &str)> = Vec::new();
    if let Some((pip, npm)) = &caches {
        for dir in [pip, npm] {
            std::fs::create_dir_all(dir)
                .map_err(|e| BuildError::io(format!("creating {}", dir.display()), e))?;
        }
        mounts.push((pip.clone(), "/cache/pip"));
        mounts.push((npm.clone(), "/cache/npm"));
    }
    let tools_dir = req.settings.cache_dir.as_ref().map(|c| c.join("tools"));
    let mut jail = Jail::new(&req.settings.sandbox, &src, &tmp, &mounts);
    if let Some(dir) = &tools_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| BuildError::io(format!("creating {}", dir.display()), e))?;
        jail = jail.with_readonly(dir, tools::INSIDE_TOOLS);
    }
    match jail.kind() {
        SandboxKind::None => {
            tracing::warn!(
                "builds are not sandboxed (sandbox = \"none\"): build steps can read everything this process can, its signing key included"
            );
            log.line("warning: this build is not sandboxed (sandbox = \"none\"): its commands run as the builder's own user and can read everything the builder can, its signing key included; use only for trusted single-user setups");
        }
        SandboxKind::Bubblewrap => {
            jail.check()?;
            log.line(format!("sandbox: {}", jail.describe()));
        }
    }

    log.line(format!(
        "fetching {} and checking out {}",
        git::redact_url(req.git_url),
        req.commit
    ));
    let fetch_started = Instant::now();
    let tree = crate::root::checkout_dir(req.work_dir, &src, req.root)?;
    let (checked_out, mirrored) =
        git::checkout(req.settings, req.git_url, req.commit, &git_dir, &tree)?;
    if let Some(root) = req.root {
        crate::root::take(&tree, root, req.commit, &src)?;
        log.line(format!(
            "building the app's root `{root}` of the repository"
        ));
    }
    jail.hand_over(&src)?;
    jail.hand_over(&tmp)?;
    if let Some((pip, npm)) = &caches {
        jail.hand_over_once(pip)?;
        jail.hand_over_once(npm)?;
    }
    log.line(format!(
        "fetched{} in {}",
        if mirrored {
            " into the cached mirror"
        } else {
            ""
        },
        took(fetch_started)
    ));
    // The objects are no longer needed; the release must not carry them.
    let _ = std::fs::remove_dir_all(&git_dir);

    let mut config = SlipwayToml::load(&src)?;
    if let Some(name) = &config.name
        && name != req.app
    {
        log.line(format!(
            "note: slipway.toml names the app `{name}`; building it as `{}`",
            req.app
        ));
    }
    let build_type = config.resolve_build_type(&src)?;
    log.line(format!(
        "build type: {build_type} ({})",
        if config.build_type.is_some() {
            "from slipway.toml"
        } else {
            "detected"
        }
    ));

    let interp = match build_type {
        BuildType::Python => {
            let range = pylock::Project::read(&src)?.python_range();
            Some(interp::choose(
                RuntimeKind::Python,
                &src,
                config.build_python.as_deref(),
                range,
                log,
            )?)
        }
        BuildType::Node => {
            let range = node::engines_range(&src)?;
            Some(interp::choose(
                RuntimeKind::Node,
                &src,
                config.build_node.as_deref(),
                range,
                log,
            )?)
        }
        BuildType::Generic => None,
    };
    if let Some(prefix) = interp.as_ref().and_then(|i| i.prefix.as_ref()) {
        jail.add_toolchain(prefix);
    }
    let (pip_cache, npm_cache) = caches.unzip();
    let ctx = Ctx {
        req,
        src,
        tmp,
        deadline: Instant::now() + config.build_timeout,
        timeout: config.build_timeout,
        jail,
        pip_cache,
        npm_cache,
        interp,
        tools_dir,
    };
    let runtime = match build_type {
        BuildType::Python => Some(python::build(&ctx, &mut config, log)?),
        BuildType::Node => Some(node::build(&ctx, &mut config, log)?),
        BuildType::Generic => None,
    };

    if let Some(command) = &config.build_command {
        run_step(&ctx, command, &[], ctx.jail.build_network(), log)
            .map_err(|f| f.into_error(command, &ctx))?;
    }
    let release = match &config.build_include {
        Some(paths) => {
            let kept = req.work_dir.join("included");
            include_only(&ctx.src, paths, &kept)?;
            log.line(format!(
                "release: only {} ([build] include)",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            kept
        }
        None => ctx.src.clone(),
    };

    let manifest = Manifest {
        app: req.app.clone(),
        version: req.version.clone(),
        commit: req.commit.to_string(),
        build_type,
        built_at: Timestamp(checked_out.commit_time.saturating_mul(1000)),
        run: config.run,
        health: config.health,
        processes: config.processes,
        runtime,
        files: 0,
        content_bytes: 0,
        release: config.release,
        hooks: config.hooks,
    };
    let artifact_path = req
        .out_dir
        .join(format!("{}-{}.tar.gz", req.app, req.version));
    let pack_started = Instant::now();
    let packed = pack::pack(&release, &manifest, &artifact_path)?;
    log.line(format!(
        "packed {} files ({} bytes) into {} ({} bytes, sha256 {}) in {}",
        packed.manifest.files,
        packed.manifest.content_bytes,
        artifact_path.display(),
        packed.size,
        packed.sha256,
        took(pack_started)
    ));
    // Signed here, in packer's own process, over the packed bytes, after
    // every build step has ended: the key never enters the sandbox.
    let signature = req.settings.signing_key.as_ref().map(|key| {
        log.line(format!(
            "signed {} {} with {}",
            req.app,
            req.version,
            key.public_key()
        ));
        key.sign(req.app, req.version, &packed.sha256)
    });
    let index = match packed.index {
        Ok(index) => {
            let built = write_index(req, &index)?;
            log.line(format!(
                "file index: {} entries in {} ({} bytes, sha256 {}){}",
                index.entries.len(),
                built.path.display(),
                built.size,
                built.sha256,
                if built.signature.is_some() {
                    ", signed"
                } else {
                    ""
                }
            ));
            Some(built)
        }
        Err(why) => {
            log.line(format!(
                "no file index: {why}; hosts will download the whole artifact"
            ));
            None
        }
    };
    Ok(BuildOutput {
        artifact_path,
        sha256: packed.sha256,
        size: packed.size,
        manifest: packed.manifest,
        build_type,
        signature,
        log: log.take_text(),
        author: checked_out.author,
        message: checked_out.message,
        watch: config.build_watch,
        index,
    })
}

/// Writes the release's index beside the artifact and signs it (in
/// packer's own process, like the artifact).
fn write_index(
    req: &BuildRequest,
    index: &deploy::index::ReleaseIndex,
) -> Result<BuiltIndex, BuildError> {
    use sha2::Digest;
    let path = req
        .out_dir
        .join(format!("{}-{}.index.json", req.app, req.version));
    let bytes = index.to_bytes();
    std::fs::write(&path, &bytes)
        .map_err(|e| BuildError::io(format!("writing {}", path.display()), e))?;
    let sha256 = Sha256::parse(hex::encode(sha2::Sha256::digest(&bytes)))
        .map_err(|e| BuildError::io("hashing the index", std::io::Error::other(e.to_string())))?;
    let signature = req
        .settings
        .signing_key
        .as_ref()
        .map(|key| key.sign_index(req.app, req.version, &sha256));
    Ok(BuiltIndex {
        path,
        sha256,
        size: bytes.len() as u64,
        signature,
    })
}

pub(crate) fn took(since: Instant) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
    ))
}

/// Moves the `[build] include` paths of the built tree into `kept`, which
/// becomes the release. A listed path the build did not leave is an error
/// naming it; a path inside another listed one is already there.
fn include_only(src: &Path, paths: &[PathBuf], kept: &Path) -> Result<(), BuildError> {
    if kept.exists() {
        std::fs::remove_dir_all(kept)
            .map_err(|e| BuildError::io(format!("clearing {}", kept.display()), e))?;
    }
    std::fs::create_dir_all(kept)
        .map_err(|e| BuildError::io(format!("creating {}", kept.display()), e))?;
    let mut sorted: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            p.components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect::<PathBuf>()
        })
        .collect();
    sorted.sort();
    let mut moved: Vec<PathBuf> = Vec::new();
    for path in sorted {
        if path.as_os_str().is_empty() {
            // `.`: the whole tree.
            return std::fs::remove_dir(kept)
                .and_then(|()| std::fs::rename(src, kept))
                .map_err(|e| BuildError::io("keeping the whole tree", e));
        }
        if moved.iter().any(|m| path.starts_with(m)) {
            continue;
        }
        let from = src.join(&path);
        let mut walked = src.to_path_buf();
        for part in path.components() {
            walked.push(part);
            if std::fs::symlink_metadata(&walked).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(BuildError::BadEntry {
                    path: path.display().to_string(),
                    reason: format!(
                        "listed in [build] include, but `{}` is a symlink; include takes real files and directories",
                        walked.strip_prefix(src).unwrap_or(&walked).display()
                    ),
                    log: String::new(),
                });
            }
        }
        if std::fs::symlink_metadata(&from).is_err() {
            return Err(BuildError::BadEntry {
                path: path.display().to_string(),
                reason: "listed in [build] include, but the build did not leave it in the tree"
                    .into(),
                log: String::new(),
            });
        }
        let to = kept.join(&path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| BuildError::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::rename(&from, &to)
            .map_err(|e| BuildError::io(format!("keeping {}", path.display()), e))?;
        moved.push(path);
    }
    Ok(())
}
