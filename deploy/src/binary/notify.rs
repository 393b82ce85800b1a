//! Readiness for a service manager: `READY=1` and `STOPPING=1` sent to
//! `$NOTIFY_SOCKET` (systemd's `Type=notify`), as `sd_notify(3)` does. One
//! datagram on a Unix socket, so no library: std's `UnixDatagram` speaks it,
//! abstract addresses (`@name`) included.
//!
//! What "ready" means differs per binary and is said where each calls
//! [`notify_ready`] (ARCHITECTURE.md, "Packaging and services").

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// The variable a service manager names its notification socket in.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Why a notification could not be sent (a service manager that asked for
/// one will then time the start out, which is the failure it sees).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{NOTIFY_SOCKET_ENV} is `{0}`: neither an absolute path nor an abstract name (@…)")]
    BadAddress(String),
    #[error("cannot send `{state}` to the service manager at {socket}: {source}")]
    Send {
        state: String,
        socket: String,
        #[source]
        source: std::io::Error,
    },
}

/// Tells the service manager this process is ready: `READY=1` on
/// `$NOTIFY_SOCKET`. Does nothing (`Ok(false)`) when the variable is not
/// set, as when the binary is started by hand or by a test.
pub fn notify_ready() -> Result<bool, NotifyError> {
    notify("READY=1")
}

/// Tells the service manager this process is shutting down: `STOPPING=1`.
pub fn notify_stopping() -> Result<bool, NotifyError> {
    notify("STOPPING=1")
}

/// [`notify_ready`], logging a failure instead of returning it: a daemon
/// keeps running either way (systemd then fails the start at its timeout,
/// saying so), so there is nothing else for it to do.
pub fn announce_ready(what: &str) {
    match notify_ready() {
        Ok(true) => tracing::debug!(ready = what, "told the service manager we are ready"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot tell the service manager we are ready"),
    }
}

/// [`notify_stopping`], logging a failure.
pub fn announce_stopping() {
    if let Err(e) = notify_stopping() {
        tracing::debug!(error = %e, "cannot tell the service manager we are stopping");
    }
}

/// Sends `state` (newline-separated `KEY=value` assignments) to
/// `$NOTIFY_SOCKET`; `Ok(false)` when it is not set.
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    match std::env::var_os(NOTIFY_SOCKET_ENV) {
        None => Ok(false),
        Some(socket) if socket.is_empty() => Ok(false),
        Some(socket) => send(&socket, state).map(|()| true),
    }
}

/// One datagram with `state` to `socket`: a path, or `@name` for Linux's
/// abstract namespace.
fn send(socket: &OsString, state: &str) -> Result<(), NotifyError> {
    let shown = socket.to_string_lossy().into_owned();
    let failed = |source| NotifyError::Send {
        state: state.to_string(),
        socket: shown.clone(),
        source,
    };
    let bytes = socket.as_bytes();
    let addr = match bytes.first() {
        Some(b'/') => std::os::unix::net::SocketAddr::from_pathname(socket).map_err(failed)?,
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..]).map_err(failed)?
        }
        _ => return Err(NotifyError::BadAddress(shown)),
    };
    let sock = UnixDatagram::unbound().map_err(failed)?;
    sock.send_to_addr(state.as_bytes(), &addr).map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(&path.clone().into_os_string(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("slipway-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(&OsString::from(format!("@{name}")), "STOPPING=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_bad_or_missing_socket_is_an_error_that_names_it() {
        let e = send(&OsString::from("relative/notify.sock"), "READY=1").unwrap_err();
        assert!(e.to_string().contains("relative/notify.sock"), "{e}");
        let e = send(&OsString::from("/nonexistent/notify.sock"), "READY=1").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("/nonexistent/notify.sock") && e.contains("READY=1"),
            "{e}"
        );
    }
}
