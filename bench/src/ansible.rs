//! The baseline people would pick instead of Slipway: the same deploy
//! (download, verify sha256, extract into `releases/<version>`, switch the
//! `current` symlink, restart, health check, roll back on failure) as an
//! Ansible playbook run against N hosts, each a local connection with a
//! root directory of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The playbook. Each host's `root`, `port` and the artifact come from the
/// inventory and extra variables.
const PLAYBOOK: &str = r#"- hosts: all
  gather_facts: false
  vars:
    app_dir: "{{ root }}/apps/data-app"
    release_dir: "{{ root }}/apps/data-app/releases/{{ version }}"
    archive: "{{ root }}/cache/data-app-{{ version }}.tar.gz"
  tasks:
    - name: deploy
      block:
        - name: directories
          file:
            path: "{{ item }}"
            state: directory
          loop: ["{{ app_dir }}/releases", "{{ root }}/cache", "{{ release_dir }}"]
        - name: what runs now
          stat:
            path: "{{ app_dir }}/current"
          register: before
        - name: download and verify
          get_url:
            url: "{{ artifact_url }}"
            dest: "{{ archive }}"
            checksum: "sha256:{{ sha256 }}"
        - name: extract
          unarchive:
            src: "{{ archive }}"
            dest: "{{ release_dir }}"
            remote_src: true
        - name: drop the archive
          file:
            path: "{{ archive }}"
            state: absent
        - name: switch current
          shell: ln -sfn "{{ release_dir }}" "{{ app_dir }}/current.new" && mv -T "{{ app_dir }}/current.new" "{{ app_dir }}/current"
        - name: restart
          shell: |
            if [ -f "{{ root }}/app.pid" ]; then kill "$(cat "{{ root }}/app.pid")" 2>/dev/null || true; fi
            cd "{{ app_dir }}/current" && PORT={{ port }} PYTHONPATH=vendor setsid python3 app.py >"{{ root }}/app.log" 2>&1 < /dev/null &
            echo $! > "{{ root }}/app.pid"
        - name: health check
          uri:
            url: "http://127.0.0.1:{{ port }}/health"
          register: health
          until: health.status == 200
          retries: 100
          delay: 0.2
      rescue:
        - name: roll back
          shell: |
            ln -sfn "{{ before.stat.lnk_source }}" "{{ app_dir }}/current.new" && mv -T "{{ app_dir }}/current.new" "{{ app_dir }}/current"
            if [ -f "{{ root }}/app.pid" ]; then kill "$(cat "{{ root }}/app.pid")" 2>/dev/null || true; fi
            cd "{{ app_dir }}/current" && PORT={{ port }} PYTHONPATH=vendor setsid python3 app.py >"{{ root }}/app.log" 2>&1 < /dev/null &
            echo $! > "{{ root }}/app.pid"
          when: before.stat.exists
        - fail:
            msg: "deploy failed, rolled back"
"#;

/// N Ansible hosts under one directory, and the artifact they fetch.
pub struct Baseline {
    pub dir: PathBuf,
    venv: PathBuf,
    hosts: usize,
}

impl Baseline {
    /// Writes the inventory (hosts `a-001..`, ports from `ports`) and the
    /// playbook under `dir`.
    pub fn new(venv: &Path, dir: &Path, ports: &[u16]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let python = venv.join("bin/python3");
        let mut inv = String::from("[all]\n");
        for (i, port) in ports.iter().enumerate() {
            let root = dir.join("hosts").join(format!("a-{:03}", i + 1));
            std::fs::create_dir_all(&root)?;
            inv.push_str(&format!(
                "a-{:03} ansible_connection=local ansible_python_interpreter={} root={} port={port}\n",
                i + 1,
                python.display(),
                root.display()
            ));
        }
        std::fs::write(dir.join("inventory.ini"), inv)?;
        std::fs::write(dir.join("deploy.yml"), PLAYBOOK)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            venv: venv.to_path_buf(),
            hosts: ports.len(),
        })
    }

    /// Runs the playbook once for `version` with `forks`; returns its wall
    /// time. A failed host is an error: the comparison needs a full deploy.
    pub async fn deploy(
        &self,
        version: &str,
        artifact_url: &str,
        sha256: &str,
        forks: usize,
    ) -> anyhow::Result<Duration> {
        let extra = serde_json::json!({
            "version": version,
            "artifact_url": artifact_url,
            "sha256": sha256,
        });
        let log = self.dir.join(format!("ansible-{version}-f{forks}.log"));
        let out = std::fs::File::create(&log)?;
        let started = Instant::now();
        let status = tokio::process::Command::new(self.venv.join("bin/ansible-playbook"))
            .arg("-i")
            .arg(self.dir.join("inventory.ini"))
            .arg(self.dir.join("deploy.yml"))
            .arg("--forks")
            .arg(forks.to_string())
            .arg("--extra-vars")
            .arg(extra.to_string())
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(out.try_clone()?))
            .stderr(std::process::Stdio::from(out))
            .status()
            .await
            .context("cannot run ansible-playbook")?;
        let took = started.elapsed();
        if !status.success() {
            bail!(
                "ansible-playbook failed ({status}) on {} hosts; see {}",
                self.hosts,
                log.display()
            );
        }
        Ok(took)
    }

    /// Stops the apps the playbook started.
    pub fn stop_apps(&self) {
        let Ok(dirs) = std::fs::read_dir(self.dir.join("hosts")) else {
            return;
        };
        for d in dirs.flatten() {
            let pid = std::fs::read_to_string(d.path().join("app.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid.filter(|p| *p > 1) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        self.stop_apps();
    }
}

/// Serves `dir` over HTTP on loopback (Python's `http.server`), as the
/// artifact store of the baseline.
pub struct FileServer {
    child: tokio::process::Child,
    pub url: String,
}

impl FileServer {
    pub async fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let child = tokio::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start python3 -m http.server")?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("the file server did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, url })
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
