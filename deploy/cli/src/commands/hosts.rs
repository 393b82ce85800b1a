//! `deploy hosts` (what every host runs) and `deploy targets` (the hosts a
//! release would touch).

use crate::Ctx;
use std::process::ExitCode;

use deploy::{AppRunStatus, Cluster, HostSelector, InstalledProcess};

/// `deploy hosts`: one line per host with its apps, versions, ports and
/// troubles, and each process of an app that runs several.
pub(crate) async fn list(client: &Ctx) -> anyhow::Result<ExitCode> {
    let hosts = client.hosts().await?;
    if client.out.json() {
        crate::output::json(&hosts)?;
        return Ok(ExitCode::SUCCESS);
    }
    if hosts.is_empty() {
        println!("no hosts registered: start a grabber");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = crate::output::table(&["CLUSTER", "HOST", "LAST SEEN", "APPS"]);
    for h in hosts {
        let apps: Vec<String> = h
            .apps
            .iter()
            .map(|a| {
                let v = a
                    .version
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or("-".into());
                let config = if a.config_version == 0 {
                    String::new()
                } else {
                    format!("+c{}", a.config_version)
                };
                let mut s = match a.port {
                    Some(p) => format!("{}@{v}{config}:{p}", a.app),
                    None => format!("{}@{v}{config}", a.app),
                };
                match a.status {
                    AppRunStatus::Restarting | AppRunStatus::Failing => {
                        s.push_str(&format!("({}, {} restarts)", a.status, a.restarts))
                    }
                    AppRunStatus::Stopped => s.push_str("(stopped)"),
                    AppRunStatus::Running => {}
                }
                if !a.processes.is_empty() {
                    let each: Vec<String> = a.processes.iter().map(process).collect();
                    s.push_str(&format!("[{}]", each.join(" ")));
                }
                s
            })
            .collect();
        table.add_row(vec![
            h.cluster.to_string(),
            h.name.to_string(),
            crate::output::ago(h.last_seen),
            apps.join(" "),
        ]);
    }
    crate::output::print_table(&table);
    Ok(ExitCode::SUCCESS)
}

/// `deploy hosts remove CLUSTER HOST` (admins).
pub(crate) async fn remove(
    client: &Ctx,
    cluster: &Cluster,
    host: &deploy::HostName,
) -> anyhow::Result<ExitCode> {
    let gone = client.remove_host(cluster, host).await?;
    if client.out.json() {
        crate::output::json(&gone)?;
    } else {
        println!("removed host {host} of {cluster}; it comes back if its agents report again");
    }
    Ok(ExitCode::SUCCESS)
}

/// One process of an app that runs several: `worker.2=412`, `web.1=410:20001`,
/// `worker.1=-(failing, 5 restarts)`.
fn process(p: &InstalledProcess) -> String {
    let pid = p.pid.map_or("-".into(), |p| p.to_string());
    let mut s = match p.port {
        Some(port) => format!("{}={pid}:{port}", p.label()),
        None => format!("{}={pid}", p.label()),
    };
    match p.status {
        AppRunStatus::Running if p.restarts > 0 => {
            s.push_str(&format!("({} restarts)", p.restarts))
        }
        AppRunStatus::Running => {}
        AppRunStatus::Stopped => s.push_str("(stopped)"),
        status => s.push_str(&format!("({status}, {} restarts)", p.restarts)),
    }
    s
}

/// `deploy targets --cluster C [--hosts REGEX]`: nothing is changed.
pub(crate) async fn targets(
    client: &Ctx,
    cluster: &Cluster,
    hosts: Option<&HostSelector>,
) -> anyhow::Result<ExitCode> {
    let t = client.targets(cluster, hosts).await?;
    if client.out.json() {
        crate::output::json(&t)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} host(s) of {} match `{}`:",
        t.hosts.len(),
        t.cluster,
        t.hosts_selector
    );
    for h in &t.hosts {
        let apps: Vec<String> = h
            .apps
            .iter()
            .map(|a| {
                let v = a.version.as_ref().map_or("-".into(), |v| v.to_string());
                format!("{}@{v}", a.app)
            })
            .collect();
        println!("  {:<24} {}", h.name, apps.join(" "));
    }
    for e in &t.excluded {
        println!("  {:<24} left out: {}", e.host, e.reason);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use deploy::ProcessName;

    use super::*;

    #[test]
    fn a_process_shows_its_copy_pid_port_and_troubles() {
        let p = |pid, port, status, restarts| InstalledProcess {
            process: ProcessName::parse("worker").unwrap(),
            index: 2,
            pid,
            port,
            status,
            restarts,
        };
        let shown = [
            p(Some(41), None, AppRunStatus::Running, 0),
            p(Some(41), Some(9001), AppRunStatus::Running, 2),
            p(None, None, AppRunStatus::Failing, 5),
            p(None, None, AppRunStatus::Stopped, 1),
        ]
        .iter()
        .map(process)
        .collect::<Vec<_>>();
        assert_eq!(
            shown,
            [
                "worker.2=41",
                "worker.2=41:9001(2 restarts)",
                "worker.2=-(failing, 5 restarts)",
                "worker.2=-(stopped)",
            ]
        );
    }
}
