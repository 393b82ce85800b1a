//! Health checks of a freshly started release, from the manifest's
//! `health` section. Probes (HTTP, TCP, command) run every `interval` (200ms
//! by default) from the start and pass on the first success; they fail when the process exits or
//! after `grace + timeout`. `Running` passes if the process is still up after
//! `grace`.

use std::time::Duration;

use deploy::layout::HostLayout;
use deploy::{HealthCheck, HealthSpec};
use tokio::time::{Instant, sleep_until};

use crate::process::{AppProcess, Launch};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a response body (and of a health command's stderr) a probe
/// reads: an app's health endpoint cannot make the grabber, which watches
/// every app, hold more.
pub(crate) const BODY_CAP: usize = 64 * 1024;

/// Checks the release `proc` runs. The error is one line for people.
pub(crate) async fn check(
    spec: &HealthSpec,
    proc: &AppProcess,
    launch: &Launch<'_>,
    http: &reqwest::Client,
    layout: &HostLayout,
) -> Result<(), String> {
    let grace = Duration::from_millis(spec.grace_ms);
    let started = Instant::now();
    if let HealthCheck::Running = spec.check {
        return if proc.survives(grace).await {
            Ok(())
        } else {
            Err(exited_msg(started))
        };
    }

    let deadline = started + grace + Duration::from_millis(spec.timeout_ms);
    let mut last_error = String::from("no probe finished");
    let interval = Duration::from_millis(spec.interval_ms.max(10));
    loop {
        let next = Instant::now() + interval;
        let probe = async {
            match &spec.check {
                HealthCheck::Http { path, expect } => {
                    probe_http(http, launch.port, path, expect.as_deref()).await
                }
                HealthCheck::Tcp => probe_tcp(launch.port).await,
                HealthCheck::Command { command } => probe_command(command, launch).await,
                HealthCheck::Running => Ok(()),
            }
        };
        tokio::select! {
            _ = proc.exited() => return Err(exited_msg(started)),
            _ = sleep_until(deadline) => {
                return Err(format!("health check timed out after {:?}: {last_error}", started.elapsed()));
            }
            r = probe => match r.and_then(|()| answered_by_app(&spec.check, launch.port, proc, layout)) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            },
        }
        tokio::select! {
            _ = proc.exited() => return Err(exited_msg(started)),
            _ = sleep_until(deadline) => {
                return Err(format!("health check timed out after {:?}: {last_error}", started.elapsed()));
            }
            _ = sleep_until(next) => {}
        }
    }
}

/// A port probe counts only when the app answered: what listens on the
/// port belongs to the app's process group, which its shim leads (the
/// group's id is the shim's pid).
fn answered_by_app(
    check: &HealthCheck,
    port: Option<u16>,
    proc: &AppProcess,
    layout: &HostLayout,
) -> Result<(), String> {
    match (check, port) {
        (HealthCheck::Http { .. } | HealthCheck::Tcp, Some(port)) => {
            crate::ports::answered_by_group(port, proc.pid, layout)
        }
        _ => Ok(()),
    }
}

fn exited_msg(started: Instant) -> String {
    format!(
        "the app exited {:.1?} after it was started",
        started.elapsed()
    )
}

fn need_port(port: Option<u16>) -> Result<u16, String> {
    port.ok_or_else(|| "the health check needs a port but the release sets none".to_string())
}

/// One GET of the health path: a 2xx answer, and `expect` within the first
/// [`BODY_CAP`] bytes of its body when given. `PROBE_TIMEOUT` covers the
/// whole probe, body included; the body is read chunk by chunk and the
/// connection dropped at the cap.
async fn probe_http(
    http: &reqwest::Client,
    port: Option<u16>,
    path: &str,
    expect: Option<&str>,
) -> Result<(), String> {
    let port = need_port(port)?;
    let sep = if path.starts_with('/') { "" } else { "/" };
    let url = format!("http://127.0.0.1:{port}{sep}{path}");
    tokio::time::timeout(PROBE_TIMEOUT, get_expecting(http, &url, expect))
        .await
        .unwrap_or_else(|_| Err(format!("GET {url} did not answer within {PROBE_TIMEOUT:?}")))
}

async fn get_expecting(
    http: &reqwest::Client,
    url: &str,
    expect: Option<&str>,
) -> Result<(), String> {
    let mut r = match http.get(url).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return Err(format!("GET {url} answered {}", r.status())),
        Err(e) => return Err(format!("GET {url} failed: {e}")),
    };
    let Some(expect) = expect else {
        return Ok(());
    };
    let mut body: Vec<u8> = Vec::new();
    loop {
        let chunk = r
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: cannot read the body: {e}"))?;
        let Some(chunk) = chunk else { break };
        let room = BODY_CAP - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if contains(&body, expect.as_bytes()) {
            return Ok(());
        }
        if body.len() >= BODY_CAP {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let shown: String = text.chars().take(200).collect();
    let within = if body.len() >= BODY_CAP {
        format!(" (read its first {BODY_CAP} bytes)")
    } else {
        String::new()
    };
    Err(format!(
        "GET {url} answered 2xx without {expect:?} in its body{within}: {shown:?}"
    ))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

async fn probe_tcp(port: Option<u16>) -> Result<(), String> {
    let port = need_port(port)?;
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to 127.0.0.1:{port}: {e}")),
        Err(_) => Err(format!("connecting to 127.0.0.1:{port} timed out")),
    }
}

/// Runs the health command as the app's user, from its release, with its
/// environment. Only the first [`BODY_CAP`] bytes of its stderr are kept
/// (the rest is read and dropped, so the command never blocks on it).
async fn probe_command(command: &str, launch: &Launch<'_>) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(launch.release_dir)
        .env_clear()
        .envs(launch.env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(user) = &launch.user {
        cmd.gid(user.gid).uid(user.uid);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run health command: {e}"))?;
    let mut kept = Vec::new();
    if let Some(mut stderr) = child.stderr.take() {
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = BODY_CAP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("cannot run health command: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&kept);
        Err(format!(
            "health command `{command}` {status}: {}",
            err.trim().chars().take(300).collect::<String>()
        ))
    }
}

/// What a check does, in words for the `checking` event.
pub(crate) fn describe(check: &HealthCheck) -> String {
    match check {
        HealthCheck::Http { path, expect: None } => format!("waiting for GET {path} to answer 2xx"),
        HealthCheck::Http {
            path,
            expect: Some(e),
        } => format!("waiting for GET {path} to answer 2xx with {e:?}"),
        HealthCheck::Tcp => "waiting for the port to accept connections".to_string(),
        HealthCheck::Command { command } => format!("waiting for `{command}` to exit 0"),
        HealthCheck::Running => "checking the process stays up".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A server whose every answer is 200 with a body that never ends;
    /// counts the bytes it managed to send.
    async fn endless(sent: Arc<AtomicUsize>) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let sent = sent.clone();
                tokio::spawn(async move {
                    let mut req = [0u8; 1024];
                    let _ = sock.read(&mut req).await;
                    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n";
                    if sock.write_all(head).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    while sock.write_all(&chunk).await.is_ok() {
                        sent.fetch_add(chunk.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn an_endless_body_is_read_up_to_the_cap_only() {
        let sent = Arc::new(AtomicUsize::new(0));
        let port = endless(sent.clone()).await;
        let http = deploy::tls::Trust::system().http_client().unwrap();
        let e = probe_http(&http, Some(port), "/health", Some("ok"))
            .await
            .unwrap_err();
        assert!(
            e.contains("without \"ok\"") && e.contains(&format!("first {BODY_CAP} bytes")),
            "{e}"
        );
        // The probe hung up at the cap: the server could push no more than
        // what fits in the socket buffers beyond it, far below what it would
        // have sent in the probe's 2 s.
        let sent = sent.load(Ordering::Relaxed);
        assert!(sent < 16 * 1024 * 1024, "the server sent {sent} bytes");
    }

    #[test]
    fn contains_finds_the_expected_text() {
        assert!(contains(b"xxokxx", b"ok"));
        assert!(!contains(b"xxoxkx", b"ok"));
        assert!(contains(b"", b""));
    }
}
