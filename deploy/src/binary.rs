//! What every Slipway binary does the same way: start tracing, turn
//! SIGTERM/SIGINT into one cancellation token, run the async main on a
//! runtime and turn its error into a message and an exit code.

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

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
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A token cancelled by the first SIGTERM or SIGINT. Call inside a runtime.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops this process");
                let _ = ctrl_c.await;
            }
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
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
        Some(path) => {
            let text = read_private_file(path)?;
            let text = text.trim().to_string();
            if text.is_empty() {
                return Err(TokenError::EmptyFile {
                    path: path.to_path_buf(),
                });
            }
            text
        }
        None => match from_env {
            Some(t) if t.trim().is_empty() => return Err(TokenError::EmptyEnv),
            Some(t) => t.trim().to_string(),
            None => return Ok(None),
        },
    };
    Ok(Some(token))
}

/// Reads a secret file, refusing one its group or others may read (checked
/// on the opened file), as ssh does with a private key.
fn read_private_file(path: &std::path::Path) -> Result<String, TokenError> {
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
