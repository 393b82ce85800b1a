//! One build: checkout, `slipway.toml`, the build type's steps, pack.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deploy::{AppName, BuildType, Manifest, Sha256, Timestamp, Version};

use crate::command::{self, Outcome};
use crate::config::SlipwayToml;
use crate::{BuildError, git, pack};

/// How long `[build] command` may run before it is killed.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What to build, and where.
#[derive(Debug, Clone, Copy)]
pub struct BuildRequest<'a> {
    pub app: &'a AppName,
    /// A local path or `file://` URL for now.
    pub git_url: &'a str,
    /// The full hex sha of the commit to build (see [`crate::resolve_ref`]).
    pub commit: &'a str,
    pub version: &'a Version,
    /// Scratch space, owned by the caller, which may remove it afterwards.
    pub work_dir: &'a Path,
    /// Where the tarball goes.
    pub out_dir: &'a Path,
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
    /// What happened, build command output included.
    pub log: String,
}

/// The build log: lines for people, mirrored to tracing.
#[derive(Default)]
struct Log(String);

impl Log {
    fn line(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        tracing::info!("{line}");
        self.0.push_str(line);
        self.0.push('\n');
    }
}

/// Builds `req.commit` of `req.git_url` into `req.out_dir`. Blocking.
///
/// The manifest's `built_at` is the commit's time, not the wall clock, so
/// the same commit and version always give the same bytes.
#[tracing::instrument(skip_all, fields(app = %req.app, version = %req.version))]
pub fn build(req: &BuildRequest) -> Result<BuildOutput, BuildError> {
    let mut log = Log::default();
    match run(req, &mut log) {
        Ok(out) => Ok(out),
        Err(e) => {
            tracing::warn!(error = %e, "build failed");
            Err(e.with_log(log.0))
        }
    }
}

fn run(req: &BuildRequest, log: &mut Log) -> Result<BuildOutput, BuildError> {
    let git_dir = req.work_dir.join("git");
    let src = req.work_dir.join("release");
    for dir in [&git_dir, &src] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| BuildError::io(format!("clearing {}", dir.display()), e))?;
        }
    }

    log.line(format!(
        "fetching {} and checking out {}",
        req.git_url, req.commit
    ));
    let checked_out = git::checkout(req.git_url, req.commit, &git_dir, &src)?;
    // The objects are no longer needed; the release must not carry them.
    let _ = std::fs::remove_dir_all(&git_dir);

    let config = SlipwayToml::load(&src)?;
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

    match build_type {
        BuildType::Node => {
            return Err(BuildError::Unsupported {
                build_type,
                log: String::new(),
            });
        }
        BuildType::Python => python_dependencies(&src, log)?,
        BuildType::Generic => {}
    }

    if let Some(command) = &config.build_command {
        run_command(req, command, &src, config.build_timeout, log)?;
    }

    let manifest = Manifest {
        app: req.app.clone(),
        version: req.version.clone(),
        commit: req.commit.to_string(),
        build_type,
        built_at: Timestamp(checked_out.commit_time.saturating_mul(1000)),
        run: config.run,
        health: config.health,
        files: 0,
        content_bytes: 0,
    };
    let artifact_path = req
        .out_dir
        .join(format!("{}-{}.tar.gz", req.app, req.version));
    let packed = pack::pack(&src, &manifest, &artifact_path)?;
    log.line(format!(
        "packed {} files ({} bytes) into {} ({} bytes, sha256 {})",
        packed.manifest.files,
        packed.manifest.content_bytes,
        artifact_path.display(),
        packed.size,
        packed.sha256
    ));
    Ok(BuildOutput {
        artifact_path,
        sha256: packed.sha256,
        size: packed.size,
        manifest: packed.manifest,
        build_type,
        log: std::mem::take(&mut log.0),
    })
}

/// Python apps run on the host's python3 with the standard library only for
/// now: a non-empty `requirements.txt` is noted in the log, not installed,
/// so a stdlib-only app that keeps a requirements file still deploys.
fn python_dependencies(src: &Path, log: &mut Log) -> Result<(), BuildError> {
    let path = src.join("requirements.txt");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BuildError::io("reading requirements.txt", e)),
    };
    let deps: Vec<&str> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    if !deps.is_empty() {
        log.line(format!(
            "warning: requirements.txt lists {} dependencies ({}); this packer does not \
             install dependencies yet, so the release runs with the standard library only",
            deps.len(),
            deps.join(", ")
        ));
    }
    Ok(())
}

/// Runs `[build] command` in the checkout, its output into the log.
fn run_command(
    req: &BuildRequest,
    command: &str,
    dir: &Path,
    timeout: Duration,
    log: &mut Log,
) -> Result<(), BuildError> {
    log.line(format!("$ {command}"));
    let env = [
        ("SLIPWAY_APP", req.app.as_str()),
        ("SLIPWAY_VERSION", req.version.as_str()),
        ("SLIPWAY_COMMIT", req.commit),
    ];
    let spec = command::Spec {
        command,
        dir,
        env: &env,
        timeout,
    };
    let started = std::time::Instant::now();
    let (outcome, output) = command::run(&spec)
        .map_err(|e| BuildError::io(format!("starting build command `{command}`"), e))?;
    // Output goes to the log as is, not through tracing line by line.
    log.0.push_str(&output);
    if !output.is_empty() && !output.ends_with('\n') {
        log.0.push('\n');
    }
    let took = humantime::format_duration(Duration::from_millis(
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    ));
    match outcome {
        Outcome::Exited(status) if status.success() => {
            log.line(format!("build command succeeded in {took}"));
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
            Err(BuildError::CommandFailed {
                command: command.to_string(),
                status,
                log: String::new(),
            })
        }
        Outcome::TimedOut => Err(BuildError::CommandTimedOut {
            command: command.to_string(),
            timeout: humantime::format_duration(timeout).to_string(),
            log: String::new(),
        }),
    }
}
