//! What every Slipway binary does the same way: start tracing (text or JSON,
//! `--log-format` / `SLIPWAY_LOG_FORMAT`), turn SIGTERM/SIGINT into one
//! cancellation token, run the async main on a runtime and turn its error
//! into a message and an exit code, read its API token (never from a flag,
//! never from a file others can read), and name the machine it runs on
//! (one rule for every agent: [`HostName::of_this_machine`]), and tell a
//! service manager when it is ready ([`notify_ready`], `notify.rs`).

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::HostName;

mod notify;

pub use notify::{
    NOTIFY_SOCKET_ENV, NotifyError, announce_ready, announce_stopping, notify, notify_ready,
    notify_stopping,
};

/// Runs `main` on a multi-threaded runtime; an error is printed in its
/// alternate form (with `anyhow`, the whole chain of causes) and exits 1.
pub fn run<F, E>(main: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(main);
    // Whatever still runs on the runtime's blocking threads (a health
    // check's command, a hook) must not keep the process alive once the
    // main is over.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    exit_code(result)
}

/// A main's result as an exit code: an error is printed in its alternate
/// form (with `anyhow`, the whole chain of causes) and exits 1.
pub fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The environment variable of every binary's `--log-format`.
pub const LOG_FORMAT_ENV: &str = "SLIPWAY_LOG_FORMAT";

/// AppTracker's older switch to JSON logs: set (to anything) means JSON,
/// unless `SLIPWAY_LOG_FORMAT` says otherwise.
pub const LOG_JSON_ENV: &str = "SLIPWAY_LOG_JSON";

/// How log lines are written: for people (`text`) or for a log pipeline
/// (`json`, one object a line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// From the environment: `SLIPWAY_LOG_FORMAT`, else JSON when
    /// `SLIPWAY_LOG_JSON` is set, else text. An unknown value is text (the
    /// binaries' `--log-format` flag reads the same variable and refuses it).
    pub fn from_env() -> Self {
        match std::env::var(LOG_FORMAT_ENV) {
            Ok(v) => v.parse().unwrap_or_default(),
            Err(_) if std::env::var_os(LOG_JSON_ENV).is_some() => LogFormat::Json,
            Err(_) => LogFormat::Text,
        }
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}` (use text or json)")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogWriter {
    Stdout,
    Stderr,
    /// Captured by the test harness with each test's output.
    Test,
}

/// The tracing setup of every binary, test harness and benchmark: an
/// `RUST_LOG` filter (or a default), text or JSON, to stdout, stderr or the
/// test harness.
///
/// ```no_run
/// use deploy::binary::{LogFormat, Tracing};
/// Tracing::new(LogFormat::from_env())
///     .default_filter("info,sqlx=warn")
///     .to_stderr()
///     .init();
/// ```
#[derive(Debug, Clone)]
pub struct Tracing {
    format: LogFormat,
    default_filter: String,
    writer: LogWriter,
}

impl Tracing {
    /// `info` unless `RUST_LOG` says otherwise, to stdout.
    pub fn new(format: LogFormat) -> Self {
        Self {
            format,
            default_filter: "info".to_string(),
            writer: LogWriter::Stdout,
        }
    }

    /// The filter used when `RUST_LOG` is not set (`info,sqlx=warn`).
    pub fn default_filter(mut self, filter: &str) -> Self {
        self.default_filter = filter.to_string();
        self
    }

    /// Logs to stderr: for commands whose stdout is their output.
    pub fn to_stderr(mut self) -> Self {
        self.writer = LogWriter::Stderr;
        self
    }

    /// Logs through the test harness, which shows them with a failed test.
    pub fn to_test_writer(mut self) -> Self {
        self.writer = LogWriter::Test;
        self
    }

    /// Installs the global subscriber. `false` when one was installed
    /// already (every test of a binary calls this; the first one wins).
    pub fn init(self) -> bool {
        use tracing_subscriber::EnvFilter;
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(&self.default_filter));
        let fmt = tracing_subscriber::fmt().with_env_filter(filter);
        let installed = match (self.format, self.writer) {
            (LogFormat::Text, LogWriter::Stdout) => fmt.try_init(),
            (LogFormat::Text, LogWriter::Stderr) => fmt.with_writer(std::io::stderr).try_init(),
            (LogFormat::Text, LogWriter::Test) => fmt.with_test_writer().try_init(),
            (LogFormat::Json, LogWriter::Stdout) => fmt.json().try_init(),
            (LogFormat::Json, LogWriter::Stderr) => {
                fmt.json().with_writer(std::io::stderr).try_init()
            }
            (LogFormat::Json, LogWriter::Test) => fmt.json().with_test_writer().try_init(),
        };
        installed.is_ok()
    }
}

/// Starts tracing as a daemon does: `format`, `info` unless `RUST_LOG`
/// says otherwise, to stdout.
pub fn init_tracing(format: LogFormat) {
    Tracing::new(format).init();
}

/// The variable that overrides a binary's stop timeout (`30s`, `2min`).
pub const STOP_TIMEOUT_ENV: &str = "SLIPWAY_STOP_TIMEOUT";

/// A token cancelled by the first SIGTERM or SIGINT, after which the
/// process has `stop_timeout` (or what `SLIPWAY_STOP_TIMEOUT` says) to end
/// by itself: past it, or at a second signal, it exits at once (status
/// 130), whatever is in flight, after the hooks of [`on_forced_exit`].
/// Call inside a runtime.
pub fn shutdown_on_signal(stop_timeout: std::time::Duration) -> CancellationToken {
    let stop_timeout = match std::env::var(STOP_TIMEOUT_ENV) {
        Ok(v) => match humantime::parse_duration(v.trim()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(value = %v, error = %e, default = ?stop_timeout,
                    "{STOP_TIMEOUT_ENV} is not a duration; using the default");
                stop_timeout
            }
        },
        Err(_) => stop_timeout,
    };
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops this process");
                let _ = tokio::signal::ctrl_c().await;
                t.cancel();
                return;
            }
        };
        let first = signals.next().await;
        tracing::info!(signal = first, stop_timeout = ?stop_timeout, "shutting down (a second signal stops at once)");
        t.cancel();
        let why = tokio::select! {
            s = signals.next() => format!("second signal ({s}): stopping now"),
            _ = tokio::time::sleep(stop_timeout) => format!(
                "still stopping after {}: stopping now",
                humantime::format_duration(stop_timeout)
            ),
        };
        tracing::warn!("{why}");
        eprintln!("{why}");
        run_forced_exit_hooks();
        std::process::exit(130);
    });
    token
}

/// SIGINT and SIGTERM as one stream.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

type Hook = Box<dyn Fn() + Send + Sync>;

static FORCED_EXIT_HOOKS: std::sync::Mutex<Vec<Hook>> = std::sync::Mutex::new(Vec::new());

/// Runs `hook` before the process exits at a second signal or past its
/// stop timeout (`slipway dev` stops the apps it started). It must be
/// quick and must not block on the runtime.
pub fn on_forced_exit(hook: impl Fn() + Send + Sync + 'static) {
    if let Ok(mut hooks) = FORCED_EXIT_HOOKS.lock() {
        hooks.push(Box::new(hook));
    }
}

fn run_forced_exit_hooks() {
    if let Ok(hooks) = FORCED_EXIT_HOOKS.lock() {
        for hook in hooks.iter() {
            hook();
        }
    }
}

/// Lets a command-line tool end quietly, as Unix tools do, when whoever
/// reads its output goes away (`deploy deploys | head -1`): Rust ignores
/// SIGPIPE, so a write to a closed pipe would make `println!` panic.
#[allow(unsafe_code)]
pub fn default_sigpipe() {
    // SAFETY: this puts back the default disposition of one signal; no
    // handler runs in this process, and signal(2) may be called from any
    // thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The environment variable every binary reads its API token from, when no
/// token file is named.
pub const TOKEN_ENV: &str = "SLIPWAY_TOKEN";

/// Why a binary has no usable token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} is empty")]
    EmptyFile { path: std::path::PathBuf },
    #[error(
        "the token file {path} can be read by other users (mode {mode:04o}): it must be private \
         to this user; run `chmod 600 {path}`"
    )]
    Exposed { path: std::path::PathBuf, mode: u32 },
    #[error("{TOKEN_ENV} is set but empty")]
    EmptyEnv,
}

/// The API token: the contents of `file` when one is named (`--token-file`),
/// else `SLIPWAY_TOKEN`; `None` when neither is given. Tokens never come
/// from a flag's value, which every user sees in `ps`.
///
/// With `drop_env` (daemons), `SLIPWAY_TOKEN` is also removed from the
/// process's environment (see [`take_env`]), so nothing it starts inherits
/// it; call it from `main` before any other thread starts.
pub fn read_token(
    file: Option<&std::path::Path>,
    drop_env: bool,
) -> Result<Option<String>, TokenError> {
    let from_env = if drop_env {
        take_env(TOKEN_ENV)
    } else {
        std::env::var(TOKEN_ENV).ok()
    };
    let token = match file {
        Some(path) => read_token_file(path)?,
        None => match from_env {
            Some(t) if t.trim().is_empty() => return Err(TokenError::EmptyEnv),
            Some(t) => t.trim().to_string(),
            None => return Ok(None),
        },
    };
    Ok(Some(token))
}

/// The token in `path`, trimmed: refused when its group or others may read
/// the file (`chmod 600`), or when it is empty.
pub fn read_token_file(path: &std::path::Path) -> Result<String, TokenError> {
    let text = read_private_file(path)?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(TokenError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// Reads a secret file, refusing one its group or others may read (checked
/// on the opened file), as ssh does with a private key.
pub fn read_private_file(path: &std::path::Path) -> Result<String, TokenError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let read = |source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mode = file.metadata().map_err(read)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(TokenError::Exposed {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read)?;
    Ok(text)
}

/// Reads the environment variable `name` and removes it from this process's
/// environment: children no longer inherit it, and its value's bytes in the
/// initial environment block (what `/proc/<pid>/environ` shows) are zeroed
/// (the name stays there, empty).
///
/// Changing the environment is only sound while no other thread runs, so
/// this checks that the process has a single thread (`/proc/self/task`);
/// otherwise the variable is left alone and a warning says so.
#[allow(unsafe_code)]
pub fn take_env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    if !single_threaded() {
        tracing::warn!(
            variable = name,
            "cannot remove a secret from the environment once threads run; it stays visible \
             to child processes"
        );
        return Some(value);
    }
    if let Ok(c_name) = std::ffi::CString::new(name) {
        // SAFETY: the process has one thread (checked just above, and this
        // thread starts none in between), so nothing else reads or writes
        // the environment meanwhile, which is `remove_var`'s requirement.
        // `getenv`'s pointer is valid until then, and points at a
        // NUL-terminated string of `value.len()` bytes (checked), as
        // `std::env::var` just read it: zeroing them stays inside it. The
        // name is left in place so `remove_var` finds the entry.
        unsafe {
            let value_ptr = libc::getenv(c_name.as_ptr());
            if !value_ptr.is_null() && libc::strlen(value_ptr) == value.len() {
                std::ptr::write_bytes(value_ptr, 0, value.len());
            }
            std::env::remove_var(name);
        }
    }
    Some(value)
}

/// Why this machine has no host name an agent can use.
#[derive(Debug, thiserror::Error)]
#[error("cannot tell this machine's host name ({tried}); pass --host (or set SLIPWAY_HOST)")]
pub struct NoHostName {
    /// What was read where, and why it would not do.
    tried: String,
}

impl NoHostName {
    /// What was read where, and why it would not do.
    pub fn tried(&self) -> &str {
        &self.tried
    }
}

/// Where [`HostName::of_this_machine`] looks, in order.
const HOST_NAME_FILES: [&str; 2] = ["/proc/sys/kernel/hostname", "/etc/hostname"];

impl HostName {
    /// This machine's name, by the one rule every agent (grabber,
    /// versionchecker, packer's worker name) follows when it is not given
    /// one: the kernel's host name (`/proc/sys/kernel/hostname`, what
    /// `hostname` prints), else `/etc/hostname`, else an error that says to
    /// pass `--host`. A name that is not a valid [`HostName`] (say, with an
    /// underscore) counts as none: the agent refuses to start rather than
    /// report under a made-up name.
    pub fn of_this_machine() -> Result<HostName, NoHostName> {
        Self::first_valid(&HOST_NAME_FILES)
    }

    fn first_valid(files: &[&str]) -> Result<HostName, NoHostName> {
        let mut tried = Vec::new();
        for path in files {
            match std::fs::read_to_string(path) {
                Ok(text) => match HostName::parse(text.trim()) {
                    Ok(name) => return Ok(name),
                    Err(e) => tried.push(format!("{path}: {e}")),
                },
                Err(e) => tried.push(format!("{path}: {e}")),
            }
        }
        Err(NoHostName {
            tried: tried.join("; "),
        })
    }
}

/// Whether this process runs one thread only (Linux; elsewhere: unknown, so
/// no).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_machine_has_a_host_name_and_a_missing_one_says_to_pass_host() {
        let name = HostName::of_this_machine().unwrap();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        if HostName::parse(kernel.trim()).is_ok() {
            assert_eq!(
                name.as_str(),
                kernel.trim(),
                "the kernel's name comes first"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("hostname");
        std::fs::write(&bad, "not_valid\n").unwrap();
        let good = dir.path().join("etc-hostname");
        std::fs::write(&good, "web-1\n").unwrap();
        let (bad, good) = (bad.display().to_string(), good.display().to_string());
        assert_eq!(
            HostName::first_valid(&[&bad, &good]).unwrap().as_str(),
            "web-1"
        );
        let e = HostName::first_valid(&[&bad, "/nonexistent/hostname"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--host") && e.contains("not_valid"), "{e}");
    }

    #[test]
    fn log_formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("Text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn a_token_file_others_can_read_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.token");
        std::fs::write(&path, "slp_secret\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_token(Some(&path), false).unwrap_err().to_string();
            assert!(
                e.contains(&path.display().to_string())
                    && e.contains(&format!("mode {mode:04o}"))
                    && e.contains("chmod 600"),
                "{e}"
            );
            assert!(!e.contains("slp_secret"), "{e}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                read_token(Some(&path), false).unwrap().as_deref(),
                Some("slp_secret")
            );
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_token(Some(&path), false),
            Err(TokenError::EmptyFile { .. })
        ));
    }
}
