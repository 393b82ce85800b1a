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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deploy::{AppName, BuildType, Manifest, Runtime, RuntimeKind, Sha256, Timestamp, Version};

use crate::command::{self, Outcome};
use crate::config::SlipwayToml;
use crate::sandbox::{Jail, SandboxKind};
use crate::{BuildError, Settings, deps, git, pack};

/// How long a build's commands may run, in all, unless `slipway.toml` says.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Where python dependencies go, relative to the release.
const PYTHON_DEPS: &str = ".slipway/python";

/// What to build, and where.
#[derive(Debug, Clone, Copy)]
pub struct BuildRequest<'a> {
    pub app: &'a AppName,
    /// Any URL libgit2 fetches from: a path, `file://`, `git://`,
    /// `http(s)://`, `ssh://`.
    pub git_url: &'a str,
    /// The full hex sha of the commit to build (see [`crate::resolve_ref`]).
    pub commit: &'a str,
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

/// How much of a running build's log is streamed; past it the stream stops
/// with a marker, and the whole (bounded) log comes with the build's result.
pub const STREAMED_LOG_CAP: u64 = 4 << 20;

/// Pieces of log the stream holds before it drops new ones; each piece is
/// at most a line or 64 KiB, so this bounds what a fast build can queue
/// while the stream's consumer is slower.
const SINK_CAPACITY: usize = 64;

/// Where a running build's log goes as it is written: a bounded channel that
/// never blocks the build. When it is full, new pieces are dropped and
/// counted, and the next piece that fits says how many bytes went missing;
/// past [`STREAMED_LOG_CAP`] the stream stops, with a marker.
#[derive(Clone)]
pub struct LogSink {
    tx: tokio::sync::mpsc::Sender<String>,
    state: std::sync::Arc<std::sync::Mutex<SinkState>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct SinkState {
    /// Bytes sent so far.
    sent: u64,
    /// Bytes dropped since the last marker.
    dropped: u64,
    /// Whether the stream reached its cap (and said so).
    capped: bool,
}

impl LogSink {
    /// A sink and the receiving end of its bounded channel.
    pub fn channel() -> (Self, tokio::sync::mpsc::Receiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::channel(SINK_CAPACITY);
        (
            Self {
                tx,
                state: Default::default(),
            },
            rx,
        )
    }

    /// Queues `text`, or drops and counts it; never waits.
    pub fn send(&self, text: String) {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let len = text.len() as u64;
        if state.capped {
            return;
        }
        if state.sent + len > STREAMED_LOG_CAP {
            state.capped = true;
            let _ = self.tx.try_send(format!(
                "[... the streamed log stops here, at {} bytes; the build's result carries its log ...]\n",
                state.sent
            ));
            return;
        }
        let text = if state.dropped > 0 {
            format!(
                "[... {} bytes of log dropped: the stream could not keep up ...]\n{text}",
                state.dropped
            )
        } else {
            text
        };
        let n = text.len() as u64;
        match self.tx.try_send(text) {
            Ok(()) => {
                state.sent += n;
                state.dropped = 0;
            }
            Err(_) => state.dropped += len,
        }
    }
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
}

/// The build log: lines for people, mirrored to tracing and to the sink.
#[derive(Default)]
pub(crate) struct Log {
    text: String,
    sink: Option<LogSink>,
}

impl Log {
    pub(crate) fn line(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        tracing::info!("{line}");
        self.text.push_str(line);
        self.text.push('\n');
        if let Some(sink) = &self.sink {
            sink.send(format!("{line}\n"));
        }
    }

    /// A command's output, as is (not through tracing line by line); the
    /// sink had it as it was printed.
    fn output(&mut self, output: &str) {
        self.text.push_str(output);
        if !output.is_empty() && !output.ends_with('\n') {
            self.text.push('\n');
        }
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// Builds `req.commit` of `req.git_url` into `req.out_dir`. Blocking.
///
/// The manifest's `built_at` is the commit's time, not the wall clock, so
/// the same commit and version always give the same bytes.
#[tracing::instrument(skip_all, fields(app = %req.app, version = %req.version))]
pub fn build(req: &BuildRequest) -> Result<BuildOutput, BuildError> {
    let mut log = Log {
        text: String::new(),
        sink: req.log_sink.cloned(),
    };
    match run(req, &mut log) {
        Ok(out) => Ok(out),
        Err(e) => {
            tracing::warn!(error = %e, "build failed");
            let e = e.with_log(log.text);
            if let Some(sink) = &log.sink {
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
    let jail = Jail::new(&req.settings.sandbox, &src, &tmp, &mounts);
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
    let (checked_out, mirrored) =
        git::checkout(req.settings, req.git_url, req.commit, &git_dir, &src)?;
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
    };
    let runtime = match build_type {
        BuildType::Python => Some(python(&ctx, &mut config, log)?),
        BuildType::Node => Some(node(&ctx, &mut config, log)?),
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
        runtime,
        files: 0,
        content_bytes: 0,
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
    Ok(BuildOutput {
        artifact_path,
        sha256: packed.sha256,
        size: packed.size,
        manifest: packed.manifest,
        build_type,
        signature,
        log: std::mem::take(&mut log.text),
    })
}

fn took(since: Instant) -> humantime::FormattedDuration {
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

/// Asks the build machine's interpreter for its version, the way the
/// grabber asks the host's.
fn runtime_of(build_type: BuildType, kind: RuntimeKind) -> Result<Runtime, BuildError> {
    let (program, args) = Runtime::probe(kind);
    let toolchain = |error: String| BuildError::Toolchain {
        build_type,
        tool: program.to_string(),
        error,
        log: String::new(),
    };
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| toolchain(e.to_string()))?;
    if !out.status.success() {
        return Err(toolchain(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if version.is_empty() {
        return Err(toolchain("it printed no version".into()));
    }
    Ok(Runtime { kind, version })
}

// ---- python ----------------------------------------------------------------

fn python(ctx: &Ctx, config: &mut SlipwayToml, log: &mut Log) -> Result<Runtime, BuildError> {
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
fn relocate_scripts(bin: &Path) -> std::io::Result<()> {
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

// ---- node ------------------------------------------------------------------

fn node(ctx: &Ctx, config: &mut SlipwayToml, log: &mut Log) -> Result<Runtime, BuildError> {
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

// ---- running commands ------------------------------------------------------

/// How a step failed.
enum StepFailure {
    Start(std::io::Error),
    Exited {
        status: String,
        output: String,
    },
    TimedOut,
    /// Killed at one of the sandbox's limits, which this says.
    Limit(String),
}

impl StepFailure {
    /// The error for a build step (`[build] command`, `npm run build`).
    fn into_error(self, command: &str, ctx: &Ctx) -> BuildError {
        match self {
            StepFailure::Start(e) => BuildError::io(format!("starting `{command}`"), e),
            StepFailure::Exited { status, .. } => BuildError::CommandFailed {
                command: command.to_string(),
                status,
                log: String::new(),
            },
            StepFailure::TimedOut => timed_out(command, ctx),
            StepFailure::Limit(limit) => BuildError::LimitExceeded {
                command: command.to_string(),
                limit,
                log: String::new(),
            },
        }
    }

    /// The error for a dependency install, naming the package the package
    /// manager could not find when it said so.
    fn into_dependencies(self, tool: &str, command: &str, ctx: &Ctx) -> BuildError {
        match self {
            StepFailure::Exited { status, output } => {
                let mut detail = status;
                if let Some(culprit) = culprit_line(&output) {
                    let _ = write!(detail, ": {culprit}");
                }
                detail.push_str(" (see the build log)");
                BuildError::Dependencies {
                    tool: tool.to_string(),
                    detail,
                    log: String::new(),
                }
            }
            other => other.into_error(command, ctx),
        }
    }
}

fn timed_out(command: &str, ctx: &Ctx) -> BuildError {
    BuildError::CommandTimedOut {
        command: command.to_string(),
        timeout: humantime::format_duration(ctx.timeout).to_string(),
        log: String::new(),
    }
}

/// The line of pip's or npm's output that names what could not be
/// installed, when there is one.
fn culprit_line(output: &str) -> Option<String> {
    const MARKS: &[&str] = &[
        "No matching distribution found for",
        "Could not find a version that satisfies",
        "is not in this registry",
        "404 Not Found",
        "notarget",
        "ERESOLVE",
        "ERROR:",
        "npm error",
        "npm ERR!",
    ];
    MARKS.iter().find_map(|mark| {
        output
            .lines()
            .find(|l| l.contains(mark))
            .map(|l| l.trim().chars().take(300).collect())
    })
}

/// Runs one command of the build in the checkout, its output into the log,
/// within what is left of the build's deadline.
fn run_step(
    ctx: &Ctx,
    command: &str,
    extra_env: &[(&str, &str)],
    network: bool,
    log: &mut Log,
) -> Result<(), StepFailure> {
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(StepFailure::TimedOut);
    }
    log.line(format!("$ {command}"));
    let mut env = vec![
        ("SLIPWAY_APP", ctx.req.app.as_str()),
        ("SLIPWAY_VERSION", ctx.req.version.as_str()),
        ("SLIPWAY_COMMIT", ctx.req.commit),
    ];
    env.extend_from_slice(extra_env);
    let spec = command::Spec {
        command,
        dir: &ctx.src,
        env: &env,
        timeout: left,
        sink: log.sink.as_ref(),
        jail: &ctx.jail,
        network,
    };
    let started = Instant::now();
    let (outcome, output) = command::run(&spec).map_err(StepFailure::Start)?;
    log.output(&output);
    match outcome {
        Outcome::Exited(status) if status.success() => {
            log.line(format!("`{command}` succeeded in {}", took(started)));
            Ok(())
        }
        Outcome::Exited(status) => {
            let status = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    let mut s = String::from("killed by a signal");
                    if let Some(sig) = status.signal() {
                        let _ = write!(s, " ({sig})");
                    }
                    s
                }
            };
            Err(StepFailure::Exited { status, output })
        }
        Outcome::TimedOut => Err(StepFailure::TimedOut),
        Outcome::TooMuchOutput(limit) => Err(StepFailure::Limit(format!(
            "it printed more than the builder's output limit of {} MiB",
            limit >> 20
        ))),
        Outcome::TooMuchDisk(limit) => Err(StepFailure::Limit(format!(
            "the build's files grew past the builder's disk limit of {} MiB",
            limit >> 20
        ))),
    }
}

/// Reads a file the build decides on before any command runs (`slipway.toml`,
/// `requirements.txt`, `package.json`, a lockfile) at the root of the
/// checkout, refusing a symlink: a repository must not make the builder
/// read a file outside it.
pub(crate) fn read_input(src: &Path, name: &str) -> std::io::Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let path = src.join(name);
    let refuse = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{name} is a symlink or not a regular file; the builder reads it only as a regular file of the repository"
            ),
        )
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refuse()
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(refuse());
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// A path as one shell word.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn culprits_are_found_in_package_manager_output() {
        let pip = "Collecting flask\nERROR: Could not find a version that satisfies the requirement nope-xyz (from versions: none)\nERROR: No matching distribution found for nope-xyz\n";
        assert_eq!(
            culprit_line(pip).as_deref(),
            Some("ERROR: No matching distribution found for nope-xyz")
        );
        let npm = "npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/nope-xyz - Not found\nnpm error 404  'nope-xyz@^1.0.0' is not in this registry.\n";
        assert_eq!(
            culprit_line(npm).as_deref(),
            Some("npm error 404  'nope-xyz@^1.0.0' is not in this registry.")
        );
        assert_eq!(culprit_line("all fine\n"), None);
    }

    #[test]
    fn shebangs_naming_the_build_python_are_made_portable() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path();
        std::fs::write(
            bin.join("gunicorn"),
            "#!/root/.pyenv/versions/3.11.7/bin/python3.11\n# -*- coding: utf-8 -*-\nimport sys\n",
        )
        .unwrap();
        std::fs::write(bin.join("tool.sh"), "#!/bin/sh\necho hi\n").unwrap();
        relocate_scripts(bin).unwrap();
        assert_eq!(
            std::fs::read_to_string(bin.join("gunicorn")).unwrap(),
            "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\nimport sys\n"
        );
        assert_eq!(
            std::fs::read_to_string(bin.join("tool.sh")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(quote(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }
}
