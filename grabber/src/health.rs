//! Health checks of a freshly started release, from the manifest's
//! `health` section. Probes (HTTP, TCP, command) run every `interval` (200ms
//! by default) from the start and pass on the first success; they fail when the process exits or
//! after `grace + timeout`. `Running` passes if the process is still up after
//! `grace`.

use std::time::Duration;

use deploy::{HealthCheck, HealthSpec};
use tokio::time::{Instant, sleep_until};

use crate::process::{AppProcess, Launch};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks the release `proc` runs. The error is one line for people.
pub(crate) async fn check(
    spec: &HealthSpec,
    proc: &AppProcess,
    launch: &Launch<'_>,
    http: &reqwest::Client,
) -> Result<(), String> {
    let grace = Duration::from_millis(spec.grace_ms);
    let started = Instant::now();
    if let HealthCheck::Running = spec.check {
        tokio::select! {
            _ = proc.exited() => return Err(exited_msg(started)),
            _ = tokio::time::sleep(grace) => {}
        }
        return if proc.is_alive() {
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
            r = probe => match r {
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

fn exited_msg(started: Instant) -> String {
    format!(
        "the app exited {:.1?} after it was started",
        started.elapsed()
    )
}

fn need_port(port: Option<u16>) -> Result<u16, String> {
    port.ok_or_else(|| "the health check needs a port but the release sets none".to_string())
}

async fn probe_http(
    http: &reqwest::Client,
    port: Option<u16>,
    path: &str,
    expect: Option<&str>,
) -> Result<(), String> {
    let port = need_port(port)?;
    let sep = if path.starts_with('/') { "" } else { "/" };
    let url = format!("http://127.0.0.1:{port}{sep}{path}");
    let r = match http.get(&url).timeout(PROBE_TIMEOUT).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return Err(format!("GET {url} answered {}", r.status())),
        Err(e) => return Err(format!("GET {url} failed: {e}")),
    };
    let Some(expect) = expect else {
        return Ok(());
    };
    // Only the start of the body is read: a health page is small.
    let body = tokio::time::timeout(PROBE_TIMEOUT, r.bytes())
        .await
        .map_err(|_| format!("GET {url}: the body did not arrive"))?
        .map_err(|e| format!("GET {url}: cannot read the body: {e}"))?;
    let text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
    if text.contains(expect) {
        Ok(())
    } else {
        let shown: String = text.chars().take(200).collect();
        Err(format!(
            "GET {url} answered 2xx without {expect:?} in its body: {shown:?}"
        ))
    }
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

async fn probe_command(command: &str, launch: &Launch<'_>) -> Result<(), String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(launch.release_dir)
        .env_clear()
        .envs(launch.env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run health command: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "health command `{command}` {}: {}",
            out.status,
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
