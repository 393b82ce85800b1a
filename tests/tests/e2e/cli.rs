//! The `deploy` CLI as ops engineers run it: the real binary (this package's
//! copy, `slipway-deploy`, started as `deploy`) against a running
//! AppTracker. What it prints for a few commands, line for line, and its
//! exit codes (0 success, 1 failed, 2 usage, 3 auth, 4 not found, 5
//! refused, 6 unreachable, 130 interrupted: `cli/exits.rs` has a real case
//! of each).

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use slipway_tests::{AppRepo, Platform, commit_hello, platform};

pub(crate) const DEPLOY: &str = env!("CARGO_BIN_EXE_slipway-deploy");

/// How one run of the CLI ended.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The run succeeded and printed nothing on stderr; its stdout.
    pub(crate) fn ok(self) -> String {
        assert_eq!((self.code, self.stderr.as_str()), (0, ""), "{self:#?}");
        self.stdout
    }
}

/// Runs `deploy ARGS` against `server` with `token` in `SLIPWAY_TOKEN` (none
/// when absent); nothing else of the test's environment reaches it.
pub(crate) async fn deploy(
    server: &str,
    token: Option<&str>,
    args: &[&str],
) -> anyhow::Result<Run> {
    deploy_with_input(server, token, args, None).await
}

/// [`deploy`] with `input` on its standard input (none: /dev/null).
pub(crate) async fn deploy_with_input(
    server: &str,
    token: Option<&str>,
    args: &[&str],
    input: Option<&[u8]>,
) -> anyhow::Result<Run> {
    deploy_env(server, token, args, input, &[]).await
}

/// [`deploy_with_input`] with more environment variables (`SLIPWAY_CONFIG`,
/// `NO_COLOR`).
pub(crate) async fn deploy_env(
    server: &str,
    token: Option<&str>,
    args: &[&str],
    input: Option<&[u8]>,
    env: &[(&str, &str)],
) -> anyhow::Result<Run> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(DEPLOY);
    // argv[0] is what clap shows in usage lines: the name people type.
    cmd.arg0("deploy")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if !server.is_empty() {
        cmd.env("SLIPWAY_SERVER", server);
    }
    if let Some(token) = token {
        cmd.env("SLIPWAY_TOKEN", token);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {DEPLOY}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).await?;
        drop(stdin);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .with_context(|| format!("deploy {args:?} did not end within 120s"))??;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout)?,
        stderr: String::from_utf8(out.stderr)?,
    })
}

/// `deploy ARGS` as the platform's admin.
pub(crate) async fn admin(p: &Platform, args: &[&str]) -> anyhow::Result<Run> {
    deploy(&p.base_url, Some(&p.admin_token), args).await
}

/// The version the first build of a commit gets.
pub(crate) fn first_version(sha: &str) -> String {
    format!("1-{}", &sha[..7])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_hosts_a_build_a_release_status_and_audit() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;

    assert_eq!(
        admin(&p, &["apps"]).await?.ok(),
        "no apps registered: `deploy register APP GIT_URL`\n"
    );
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let sha = commit_hello(&repo, "A", true)?;
    let git_url = repo.path.display().to_string();
    assert_eq!(
        admin(&p, &["register", "hello", &git_url]).await?.ok(),
        format!("registered hello ({git_url})\n")
    );
    // Tables: a header, columns aligned three spaces apart, times relative.
    let apps = admin(&p, &["apps"]).await?.ok();
    let lines: Vec<&str> = apps.lines().collect();
    assert_eq!(lines.len(), 2, "{apps}");
    let columns = [
        "NAME",
        "REPOSITORY",
        "BRANCH",
        "AUTO-DEPLOY",
        "ROOT",
        "REGISTERED",
    ];
    let starts: Vec<usize> = columns.iter().filter_map(|c| lines[0].find(c)).collect();
    assert_eq!(starts.len(), columns.len(), "{apps}");
    let cells: Vec<&str> = starts
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let end = starts.get(i + 1).copied().unwrap_or(lines[1].len());
            lines[1]
                .get(at..end.min(lines[1].len()))
                .unwrap_or("")
                .trim()
        })
        .collect();
    assert_eq!(
        cells,
        ["hello", git_url.as_str(), "main", "-", "-", "just now"],
        "{apps}"
    );
    let hosts = admin(&p, &["hosts"]).await?.ok();
    let table = regex::Regex::new(
        r"^CLUSTER   HOST      LAST SEEN +APPS\nlocal     local-1   (just now|\d+s ago)\n$",
    )?;
    assert!(table.is_match(&hosts), "{hosts:?}");

    // A build, waited for: queued (or already claimed), then succeeded.
    let version = first_version(&sha);
    let commit = &sha[..12];
    let out = admin(&p, &["build", "hello", "--wait"]).await?.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!("build 1     {version:<14} ")),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!("build 1     {version:<14} succeeded  {commit} (main) — A")
    );

    // A release of that version, followed to its end.
    let out = admin(
        &p,
        &["release", "hello", &version, "--cluster", "local", "--wait"],
    )
    .await?
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("deploy 1 of hello to local (1 hosts): running"),
        "{out}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(format!("deploy 1 {version}: succeeded").as_str()),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  local-1              done")),
        "{out}"
    );

    // The host says what it runs at its next heartbeat.
    let port = p.host("local-1").port;
    let line = regex::Regex::new(&format!(
        r"\nlocal     local-1   (just now|\d+s ago) +hello@{version}:{port}\n$"
    ))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let hosts = loop {
        let hosts = admin(&p, &["hosts"]).await?.ok();
        if line.is_match(&hosts) || Instant::now() > deadline {
            break hosts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(line.is_match(&hosts), "{hosts:?}");

    let builds = admin(&p, &["builds", "hello"]).await?.ok();
    let row = regex::Regex::new(&format!(
        r"^ID   VERSION +STATUS +COMMIT +REF +AGE +MESSAGE\n1    {version}   succeeded   {commit}   main   (just now|\d+s ago) +A\n$"
    ))?;
    assert!(row.is_match(&builds), "{builds:?}");

    let d = p.client.deploy(deploy::DeployId(1)).await?;
    let message = d.hosts[0].message.clone().unwrap_or_default();
    // The host downloaded the whole artifact (about a kilobyte), reusing
    // nothing: the status says so in its transfer column.
    let t = d.hosts[0].transfer.expect("a transfer");
    assert_eq!(t.bytes_reused, 0, "{t:?}");
    assert!(t.bytes_downloaded < 99_950, "{t:?}");
    let size = match t.bytes_downloaded {
        n @ 0..1000 => format!("{n} B"),
        n => format!("{:.1} kB", n as f64 / 1000.0),
    };
    assert_eq!(
        admin(&p, &["status", "1"]).await?.ok(),
        format!(
            "deploy 1: hello {version} on local (hosts ~ {}): succeeded\n  local-1              done         {size}{}\n",
            d.hosts_selector,
            if message.is_empty() {
                String::new()
            } else {
                format!("  {message}")
            }
        )
    );
    // Following a deploy that ended prints where it ended.
    let followed = admin(&p, &["status", "1", "--follow"]).await?.ok();
    assert!(
        followed.ends_with(&format!("deploy 1 {version}: succeeded\n")),
        "{followed}"
    );

    // The audit log, newest first: the release, the build and the
    // registration, by the admin token's name (times made fixed to compare
    // whole lines).
    let when = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")?;
    let audit = admin(&p, &["audit"]).await?.ok();
    assert_eq!(
        when.replace_all(&audit, "YYYY-MM-DDTHH:MM:SSZ"),
        format!(
            "ID     WHEN                 WHO                      REQUEST                                  FROM            OUTCOME              TARGET
3      YYYY-MM-DDTHH:MM:SSZ test-admin (admin)       POST /api/v1/deploys                     127.0.0.1       201                  deploy 1 of {version} to local
2      YYYY-MM-DDTHH:MM:SSZ test-admin (admin)       POST /api/v1/apps/hello/builds           127.0.0.1       201                  build 1 ({version}) of main
1      YYYY-MM-DDTHH:MM:SSZ test-admin (admin)       POST /api/v1/apps                        127.0.0.1       201                  app hello
"
        )
    );
    // A page that is not the last says how to ask for the next.
    let audit = admin(&p, &["audit", "--limit", "1"]).await?.ok();
    let lines: Vec<&str> = audit.lines().collect();
    assert_eq!(lines.len(), 3, "{audit}");
    assert!(lines[1].starts_with("3      "), "{audit}");
    assert_eq!(lines[2], "(older: --before 3)");
    let audit = admin(&p, &["audit", "--before", "1"]).await?.ok();
    assert_eq!(audit, "no audit entries\n");
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_that_fails_its_health_checks_exits_1() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let sha = commit_hello(&repo, "sick", false)?;
    p.register("hello", &repo.path).await?;

    let run = admin(
        &p,
        &["release", "hello", "main", "--cluster", "local", "--wait"],
    )
    .await?;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stderr, "", "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[lines.len().saturating_sub(2)..],
        [
            format!("deploy 1 {}: failed", first_version(&sha)).as_str(),
            "  error: failed: 1 host(s) failed, more than max_failures 0 allows (0)"
        ],
        "{run:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "  local-1              failed       in checking, not rolled back  \
             health check timed out after "
        )),
        "{run:#?}"
    );
    // The app's own words, from its log tail.
    assert!(
        lines.iter().any(
            |l| l.starts_with("    | ") && l.contains("health check broken on purpose in sick")
        ),
        "{run:#?}"
    );

    // Showing the failed deploy exits 1 too.
    let status = admin(&p, &["status", "1"]).await?;
    assert_eq!(status.code, 1, "{status:#?}");
    assert!(
        status.stdout.starts_with(&format!(
            "deploy 1: hello {} on local (hosts ~ ",
            first_version(&sha)
        )),
        "{status:#?}"
    );
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_say_what_went_wrong_and_what_to_run() -> anyhow::Result<()> {
    let p = platform().start().await?;
    let server = p.base_url.as_str();

    // A name that breaks the rule is refused before any request.
    let run = admin(&p, &["builds", "Not_An_App"]).await?;
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .starts_with("error: invalid value 'Not_An_App' for '<APP>': "),
        "{run:#?}"
    );

    // An app nobody registered (and none is): what to run instead.
    let run = admin(&p, &["release", "nope", "main", "--cluster", "local"]).await?;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (
            4,
            "",
            "error: unknown app \"nope\"; no app is registered yet — see `deploy register APP \
             GIT_URL`\n"
        ),
        "{run:#?}"
    );

    // A deploy that does not exist.
    let run = admin(&p, &["status", "999"]).await?;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (
            4,
            "",
            "error: no deploy 999 — see `deploy deploys` for the recent ones\n"
        ),
        "{run:#?}"
    );

    // No token, or one AppTracker does not know.
    let login_hint = "hint: log in with `deploy login` (the token is read from standard input), \
                      or set SLIPWAY_TOKEN or --token-file FILE; an admin makes tokens with \
                      `deploy token create`\n";
    let run = deploy(server, None, &["apps"]).await?;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.clone()),
        (
            3,
            "",
            format!(
                "error: no API token: send `Authorization: Bearer <token>` (the CLI reads \
                 SLIPWAY_TOKEN) (unauthorized, HTTP 401)\n{login_hint}"
            )
        ),
        "{run:#?}"
    );
    let run = deploy(server, Some("slw_nope"), &["apps"]).await?;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.clone()),
        (
            3,
            "",
            format!("error: unknown or revoked API token (unauthorized, HTTP 401)\n{login_hint}")
        ),
        "{run:#?}"
    );
    // A token file is read when private to its user, refused otherwise.
    let file = p.dir().join("admin.token");
    std::fs::write(&file, &p.admin_token)?;
    std::fs::set_permissions(&file, Permissions::from_mode(0o600))?;
    let path = file.display().to_string();
    assert_eq!(
        deploy(server, None, &["apps", "--token-file", &path])
            .await?
            .ok(),
        "no apps registered: `deploy register APP GIT_URL`\n"
    );
    std::fs::set_permissions(&file, Permissions::from_mode(0o644))?;
    let run = deploy(server, None, &["apps", "--token-file", &path]).await?;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr),
        (
            2,
            "",
            format!(
                "error: the token file {path} can be read by other users (mode 0644): it must be \
                 private to this user; run `chmod 600 {path}`\n"
            )
        ),
    );
    // A token as a flag is refused before anything is sent.
    let run = deploy(server, None, &["apps", "--token", "slw_nope"]).await?;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.starts_with("error: --token is refused: "),
        "{run:#?}"
    );
    // Nobody listening.
    let run = deploy("http://127.0.0.1:9", Some("t"), &["apps"]).await?;
    assert_eq!(run.code, 6, "{run:#?}");
    assert!(
        run.stderr
            .starts_with("error: cannot reach AppTracker at http://127.0.0.1:9/api/v1/apps"),
        "{run:#?}"
    );

    // Help is not an error.
    let run = deploy(server, None, &["release", "--help"]).await?;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.starts_with(
            "Deploy an app at a version (`17-3f9c2ab`) or a git ref to a cluster\n\n\
             Usage: deploy release [OPTIONS] --cluster <CLUSTER> <APP> <VERSION_OR_REF>\n"
        ),
        "{run:#?}"
    );
    p.shutdown().await
}

/// Each exit code from a real case; `--wait` through a restart.
mod exits;
/// `--output json` of every read command against the API's answers.
mod json;
/// `[processes]` through packer, a grabber and the CLI.
mod process_types;
/// The live table on a terminal (tmux), `login`, completions, man.
mod terminal;
