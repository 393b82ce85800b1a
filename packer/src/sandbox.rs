//! The build sandbox. Every command a build runs on repository content
//! (pip, npm, `npm run build`, `[build] command`) runs under bubblewrap:
//! its own mount, PID, IPC and UTS namespaces (and network namespace unless
//! the step needs the network), a root that holds only `/usr` (read-only),
//! a few files of `/etc` (read-only), the interpreters packer found
//! (read-only), the checkout (at `/build`), the build's own `/tmp` and the
//! app's own download caches, as an unprivileged user, with rlimits on
//! memory, processes and file size. Nothing of the process that started it
//! is reachable: no `/proc` of the parent, no inherited environment beyond
//! [`KEPT_VARS`], no signing key, no data directory.
//!
//! When packer runs as root, bwrap runs as root too (so it can bind paths
//! only root can reach, such as a pyenv under `/root`), without a user
//! namespace, and the command drops to [`SandboxConfig::user`] with
//! `setpriv` before it starts: a real unprivileged uid, so files owned by
//! root are out of reach even if a bind leaked one (bwrap's `--uid` in a
//! user namespace made by root would still be uid 0 to the kernel outside).
//! As another user, bwrap makes a user namespace and the command keeps that
//! user's uid. Limits go on with `prlimit`, `setpriv` sets `no_new_privs`:
//! both come with util-linux, so this module has no unsafe code.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::BuildError;

/// Variables passed through from packer's own environment; everything else
/// is dropped. Beyond the basics, what reaching package indexes through a
/// company's proxy, CA or mirror needs. Inside the sandbox `PATH` and `HOME`
/// are the sandbox's own; a CA file or directory named here is bound
/// read-only at the same path.
pub const KEPT_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "npm_config_registry",
    "NPM_CONFIG_REGISTRY",
];

/// The kept variables that name files a build needs to read.
const PATH_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
];

/// `PATH` when packer itself has none (unsandboxed builds).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What of `/etc` a build sees (read-only, each when it exists): name
/// resolution, CA certificates, the dynamic loader's cache, Debian's
/// alternatives, users and groups (for `id`), and the package managers'
/// system-wide settings (a company mirror in `pip.conf`).
const ETC: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "alternatives",
    "localtime",
    "timezone",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "pip.conf",
    "npmrc",
    "mime.types",
    "os-release",
    "debian_version",
    "gitconfig",
];

/// Where things are inside the sandbox.
pub const INSIDE_CHECKOUT: &str = "/build";
const INSIDE_TMP: &str = "/tmp";

/// Whether builds are sandboxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    /// bubblewrap; builds refuse to run when it cannot be set up.
    #[default]
    Bubblewrap,
    /// No sandbox: build steps run as packer's own user and can read what
    /// it can (its signing key included). For trusted single-user setups;
    /// every build warns.
    None,
}

impl std::str::FromStr for SandboxKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bubblewrap" | "bwrap" => Ok(SandboxKind::Bubblewrap),
            "none" => Ok(SandboxKind::None),
            other => Err(format!(
                "unknown sandbox `{other}`: expected `bubblewrap` or `none`"
            )),
        }
    }
}

/// The unprivileged user builds run as when packer runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxUser {
    /// As configured (a name, a uid or `uid:gid`), for messages.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Default for SandboxUser {
    /// `nobody` (65534).
    fn default() -> Self {
        Self {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        }
    }
}

impl SandboxUser {
    /// A user name (looked up in the user database), a uid (its group is
    /// the same number) or `uid:gid`. Root (0) is refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (uid, gid) = if let Some((u, g)) = s.split_once(':') {
            let uid = u
                .parse::<u32>()
                .map_err(|_| format!("sandbox user `{s}`: `{u}` is not a uid"))?;
            let gid = g
                .parse::<u32>()
                .map_err(|_| format!("sandbox user `{s}`: `{g}` is not a gid"))?;
            (uid, gid)
        } else if let Ok(uid) = s.parse::<u32>() {
            (uid, uid)
        } else {
            match nix::unistd::User::from_name(s) {
                Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw()),
                Ok(None) => {
                    return Err(format!(
                        "sandbox user `{s}` does not exist on this machine (create it, or give a uid)"
                    ));
                }
                Err(e) => return Err(format!("cannot look up the sandbox user `{s}`: {e}")),
            }
        };
        if uid == 0 || gid == 0 {
            return Err(format!(
                "sandbox user `{s}` is root: builds must run as an unprivileged user"
            ));
        }
        Ok(Self {
            name: s.to_string(),
            uid,
            gid,
        })
    }
}

/// What one sandboxed build may use. Memory is `RLIMIT_DATA` per process
/// (heap and private writable mappings: unlike `RLIMIT_AS` it leaves V8's
/// address-space reservations alone); processes is `RLIMIT_NPROC`, which
/// the kernel counts per uid (every build running as that user shares it);
/// file size is `RLIMIT_FSIZE`; disk is what the checkout, `/tmp` and the
/// app's download caches hold, measured while the step runs; output is
/// what one step may print before it is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory: u64,
    pub processes: u64,
    pub file_size: u64,
    pub disk: u64,
    pub output: u64,
}

const MIB: u64 = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 4096 * MIB,
            processes: 1024,
            file_size: 2048 * MIB,
            disk: 10240 * MIB,
            output: 64 * MIB,
        }
    }
}

/// How builds are sandboxed: part of a packer's `Settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    pub kind: SandboxKind,
    /// The bubblewrap program (found on `PATH` when it has no `/`).
    pub bwrap: PathBuf,
    /// Who builds run as when packer runs as root.
    pub user: SandboxUser,
    pub limits: Limits,
    /// Whether `[build] command` and `npm run build` reach the network.
    /// Dependency steps (pip, npm install) always do.
    pub build_network: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            kind: SandboxKind::Bubblewrap,
            bwrap: PathBuf::from("bwrap"),
            user: SandboxUser::default(),
            limits: Limits::default(),
            build_network: false,
        }
    }
}

/// A directory bound into the sandbox.
#[derive(Debug, Clone)]
struct Mount {
    outside: PathBuf,
    inside: PathBuf,
    writable: bool,
}

/// One build's sandbox: what it binds, as whom, within which limits.
#[derive(Debug)]
pub(crate) struct Jail {
    config: SandboxConfig,
    /// The uid and gid to drop to (packer runs as root), else `None`.
    drop_to: Option<(u32, u32)>,
    /// Writable: the checkout, `/tmp`, the download caches.
    work: Vec<Mount>,
    /// Read-only toolchain directories outside `/usr`.
    toolchain: Vec<PathBuf>,
    /// `PATH` inside.
    path: String,
}

impl Jail {
    /// The sandbox of a build whose checkout is `checkout` and scratch
    /// `/tmp` is `tmp` (both outside paths, both existing), with the app's
    /// download caches `caches` (outside path, path inside).
    pub(crate) fn new(
        config: &SandboxConfig,
        checkout: &Path,
        tmp: &Path,
        caches: &[(PathBuf, &str)],
    ) -> Self {
        let mut work = vec![
            Mount {
                outside: checkout.to_path_buf(),
                inside: PathBuf::from(INSIDE_CHECKOUT),
                writable: true,
            },
            Mount {
                outside: tmp.to_path_buf(),
                inside: PathBuf::from(INSIDE_TMP),
                writable: true,
            },
        ];
        for (outside, inside) in caches {
            work.push(Mount {
                outside: outside.clone(),
                inside: PathBuf::from(inside),
                writable: true,
            });
        }
        let root = nix::unistd::geteuid().is_root();
        let drop_to = (config.kind == SandboxKind::Bubblewrap && root)
            .then_some((config.user.uid, config.user.gid));
        let toolchain = if config.kind == SandboxKind::Bubblewrap {
            TOOLCHAIN.get_or_init(toolchain_dirs).clone()
        } else {
            Vec::new()
        };
        let mut path: Vec<String> = toolchain
            .iter()
            .map(|d| d.join("bin").display().to_string())
            .collect();
        path.push(DEFAULT_PATH.into());
        Self {
            config: config.clone(),
            drop_to,
            work,
            toolchain,
            path: path.join(":"),
        }
    }

    /// Also binds `outside` read-only at `inside` (the shared tools).
    pub(crate) fn with_readonly(mut self, outside: &Path, inside: &str) -> Self {
        self.work.push(Mount {
            outside: outside.to_path_buf(),
            inside: PathBuf::from(inside),
            writable: false,
        });
        self
    }

    /// Also binds an interpreter's installation read-only (one chosen by a
    /// project's pin, besides those on packer's `PATH`), its `bin` first on
    /// `PATH`.
    pub(crate) fn add_toolchain(&mut self, prefix: &Path) {
        if self.config.kind != SandboxKind::Bubblewrap
            || self.toolchain.iter().any(|d| prefix.starts_with(d))
        {
            return;
        }
        self.toolchain.push(prefix.to_path_buf());
        self.path = format!("{}:{}", prefix.join("bin").display(), self.path);
    }

    pub(crate) fn kind(&self) -> SandboxKind {
        self.config.kind
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Whether build steps (not dependency steps) get the network.
    pub(crate) fn build_network(&self) -> bool {
        self.config.build_network
    }

    /// The outside directories whose size counts against the disk limit.
    pub(crate) fn disk_dirs(&self) -> impl Iterator<Item = &Path> {
        self.work
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.outside.as_path())
    }

    /// A few words for the build log: what the build runs in.
    pub(crate) fn describe(&self) -> String {
        match self.config.kind {
            SandboxKind::None => "none".into(),
            SandboxKind::Bubblewrap => {
                let who = match self.drop_to {
                    Some((uid, gid)) => format!("as {} ({uid}:{gid})", self.config.user.name),
                    None => "as packer's own user, in a user namespace".into(),
                };
                let l = &self.config.limits;
                format!(
                    "bubblewrap, {who}; limits: {} MiB memory a process, {} processes, {} MiB a file, {} MiB of disk, {} MiB of output a step; build steps {} the network",
                    l.memory / MIB,
                    l.processes,
                    l.file_size / MIB,
                    l.disk / MIB,
                    l.output / MIB,
                    if self.config.build_network {
                        "reach"
                    } else {
                        "do not reach"
                    }
                )
            }
        }
    }

    /// Where an outside path is seen inside (the same path unsandboxed).
    pub(crate) fn inside(&self, outside: &Path) -> PathBuf {
        if self.config.kind == SandboxKind::None {
            return outside.to_path_buf();
        }
        for m in &self.work {
            if let Ok(rest) = outside.strip_prefix(&m.outside) {
                return if rest.as_os_str().is_empty() {
                    m.inside.clone()
                } else {
                    m.inside.join(rest)
                };
            }
        }
        outside.to_path_buf()
    }

    /// Hands a directory the sandbox writes (and everything in it) to the
    /// sandbox's user. Nothing to do unless packer runs as root.
    pub(crate) fn hand_over(&self, dir: &Path) -> Result<(), BuildError> {
        let Some((uid, gid)) = self.drop_to else {
            return Ok(());
        };
        for entry in walkdir::WalkDir::new(dir).follow_links(false) {
            let entry = entry.map_err(|e| {
                BuildError::io(
                    format!("handing {} to the sandbox user", dir.display()),
                    e.into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
                )
            })?;
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid)).map_err(|e| {
                BuildError::io(
                    format!("handing {} to the sandbox user", entry.path().display()),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Like [`Jail::hand_over`] for a long-lived directory (a download
    /// cache): walks it only when its top is not the sandbox user's yet.
    pub(crate) fn hand_over_once(&self, dir: &Path) -> Result<(), BuildError> {
        use std::os::unix::fs::MetadataExt;
        let Some((uid, gid)) = self.drop_to else {
            return Ok(());
        };
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| BuildError::io(format!("reading {}", dir.display()), e))?;
        if meta.uid() == uid && meta.gid() == gid {
            return Ok(());
        }
        self.hand_over(dir)
    }

    /// Checks that the sandbox can be set up by running `true` in it, so a
    /// missing bwrap or refused namespaces fail the build with an error that
    /// names the fix, before any step.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if self.config.kind == SandboxKind::None {
            return Ok(());
        }
        let mut cmd = self.command("true", Path::new(INSIDE_CHECKOUT), &[], false);
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let bwrap = self.config.bwrap.display();
        let install = "install bubblewrap (Debian and Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`), or, for a trusted single-user setup only, turn the sandbox off (`sandbox = \"none\"`)";
        match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BuildError::Sandbox {
                reason: format!("`{bwrap}` (bubblewrap) was not found: {install}"),
                log: String::new(),
            }),
            Err(e) => Err(BuildError::Sandbox {
                reason: format!("cannot run `{bwrap}` (bubblewrap): {e}; {install}"),
                log: String::new(),
            }),
            Ok(out) if !out.status.success() => {
                let said = String::from_utf8_lossy(&out.stderr);
                let said = said.trim();
                let hint = if said.contains("namespace") || said.contains("Operation not permitted")
                {
                    "; unprivileged user namespaces may be turned off (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0), or run packer as root"
                } else {
                    ""
                };
                Err(BuildError::Sandbox {
                    reason: format!(
                        "`{bwrap}` failed to start a sandbox ({}): {said}{hint}",
                        out.status
                    ),
                    log: String::new(),
                })
            }
            Ok(_) => Ok(()),
        }
    }

    /// The command that runs `sh -c <command>` in the sandbox, in `dir`
    /// (an outside path inside the checkout), with the kept variables and
    /// `env` (values as seen inside), and the network when `network`.
    pub(crate) fn command(
        &self,
        command: &str,
        dir: &Path,
        env: &[(&str, &str)],
        network: bool,
    ) -> Command {
        match self.config.kind {
            SandboxKind::None => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(command).current_dir(dir).env_clear();
                for key in KEPT_VARS {
                    if let Some(v) = std::env::var_os(key) {
                        cmd.env(key, v);
                    } else if *key == "PATH" {
                        cmd.env(key, DEFAULT_PATH);
                    }
                }
                for (k, v) in env {
                    cmd.env(k, v);
                }
                cmd
            }
            SandboxKind::Bubblewrap => self.bwrap(command, dir, env, network),
        }
    }

    fn bwrap(&self, command: &str, dir: &Path, env: &[(&str, &str)], network: bool) -> Command {
        let mut cmd = Command::new(&self.config.bwrap);
        // bwrap passes its environment on: the variables travel there, not
        // in its argv (which every user of the machine can read).
        cmd.env_clear();
        for key in KEPT_VARS {
            if *key == "PATH" || *key == "HOME" {
                continue;
            }
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("PATH", &self.path).env("HOME", INSIDE_TMP);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args([
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "slipway-build",
        ]);
        if !network {
            cmd.arg("--unshare-net");
        }
        if self.drop_to.is_none() {
            cmd.arg("--unshare-user");
        }
        cmd.args(["--ro-bind", "/usr", "/usr"]);
        // Merged-/usr systems link these into /usr; older ones have them.
        for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let host = Path::new("/").join(top);
            match std::fs::read_link(&host) {
                Ok(target) => {
                    cmd.arg("--symlink").arg(target).arg(&host);
                }
                Err(_) if host.is_dir() => {
                    cmd.arg("--ro-bind").arg(&host).arg(&host);
                }
                Err(_) => {}
            }
        }
        cmd.args(["--proc", "/proc", "--dev", "/dev"]);
        // Directories bwrap makes for mount points are root's and closed
        // to others unless made first, open: the sandbox user must pass.
        let mut made: Vec<PathBuf> = Vec::new();
        make_parents(&mut cmd, &mut made, Path::new("/etc/x"));
        for name in ETC {
            let p = Path::new("/etc").join(name);
            cmd.arg("--ro-bind-try").arg(&p).arg(&p);
        }
        if let Ok(entries) = std::fs::read_dir("/etc") {
            // Debian's python reads /etc/python3.X/sitecustomize.py.
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("python3") {
                    let p = e.path();
                    cmd.arg("--ro-bind-try").arg(&p).arg(&p);
                }
            }
        }
        for var in PATH_VARS {
            if let Some(v) = std::env::var_os(var) {
                let p = PathBuf::from(v);
                if p.is_absolute() && !p.starts_with("/usr") && !p.starts_with("/etc") {
                    make_parents(&mut cmd, &mut made, &p);
                    cmd.arg("--ro-bind-try").arg(&p).arg(&p);
                }
            }
        }
        for dir in &self.toolchain {
            make_parents(&mut cmd, &mut made, dir);
            cmd.arg("--ro-bind").arg(dir).arg(dir);
        }
        for m in &self.work {
            make_parents(&mut cmd, &mut made, &m.inside);
            cmd.arg(if m.writable { "--bind" } else { "--ro-bind" })
                .arg(&m.outside)
                .arg(&m.inside);
        }
        cmd.arg("--chdir").arg(self.inside(dir));
        if self.drop_to.is_some() {
            // Only to drop them again: setpriv changes uid and gid.
            cmd.args(["--cap-add", "CAP_SETUID,CAP_SETGID"]);
        }
        let l = &self.config.limits;
        cmd.arg("--")
            .arg("prlimit")
            .arg(format!("--data={}", l.memory))
            .arg(format!("--nproc={}", l.processes))
            .arg(format!("--fsize={}", l.file_size))
            .arg("--core=0")
            .arg("--")
            .arg("setpriv");
        if let Some((uid, gid)) = self.drop_to {
            cmd.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .args(["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]);
        }
        cmd.args(["--no-new-privs", "--", "sh", "-c"]).arg(command);
        cmd
    }
}

/// Creates (mode 0755) the directories above `dir` inside the sandbox, once
/// each, so a toolchain under `/root` is reachable though `/root` is not.
fn make_parents(cmd: &mut Command, made: &mut Vec<PathBuf>, dir: &Path) {
    let mut parents: Vec<&Path> = dir.ancestors().skip(1).collect();
    parents.reverse();
    for p in parents {
        if p == Path::new("/") || p.starts_with("/usr") || made.iter().any(|m| m == p) {
            continue;
        }
        cmd.args(["--perms", "0755", "--dir"]).arg(p);
        made.push(p.to_path_buf());
    }
}

/// Checks that builds can be sandboxed as configured (a trial run of
/// `true`), for a start-up message; returns the kind checked.
pub fn check_sandbox(config: &SandboxConfig) -> Result<SandboxKind, BuildError> {
    if config.kind == SandboxKind::None {
        return Ok(SandboxKind::None);
    }
    let scratch = tempfile::tempdir()
        .map_err(|e| BuildError::io("creating a scratch directory to try the sandbox in", e))?;
    let jail = Jail::new(config, scratch.path(), scratch.path(), &[]);
    jail.check()?;
    Ok(config.kind)
}

/// The toolchain directories, found once per process: asking the
/// interpreters costs about half a second (a pyenv shim is a shell script),
/// more than the sandbox itself. A builder picks up an interpreter installed
/// outside `/usr` after it started when it restarts.
static TOOLCHAIN: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

mod toolchain;
use toolchain::toolchain_dirs;

#[cfg(test)]
mod tests;
