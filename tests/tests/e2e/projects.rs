//! The Python and Node projects people have (`tests/fixtures/projects`:
//! a pyproject src-layout package with package data, a uv project, a
//! Poetry project, an npm project with a TypeScript build, a pnpm project
//! and a Yarn project, each with its real lockfile) go from a git
//! repository to running on two hosts, and answer with their own code's
//! words, their own data file's and a dependency's work.

use std::path::Path;

use deploy::DeployStatus;
use slipway_tests::{APP_PORT, AppRepo, get_app, platform};

/// Copies fixture `name` into `to`.
fn copy_fixture(name: &str, to: &Path) -> anyhow::Result<()> {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/projects")
        .join(name);
    for entry in walkdir::WalkDir::new(&from) {
        let entry = entry?;
        let target = to.join(entry.path().strip_prefix(&from)?);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Builds fixture `name` from a git repository, deploys it to two hosts
/// with `run`, and checks each answers with every one of `expect` and the
/// version it runs.
async fn runs_on_two_hosts(name: &str, run: &str, expect: &[&str]) -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1", "local-2"]).start().await?;
    let repo = AppRepo::new(p.dir().join(name))?;
    copy_fixture(name, &repo.path)?;
    let toml = format!(
        "[run]\ncommand = \"{run}\"\nport = {APP_PORT}\nstop_timeout = \"3s\"\n\n[health]\nhttp = \"/\"\ntimeout = \"60s\"\ngrace = \"200ms\"\n"
    );
    repo.commit(&[("slipway.toml", &toml)], name)?;
    let app = p.register(name, &repo.path).await?;
    let d = p.release_and_wait(&app, "main", None).await?;
    if d.status != DeployStatus::Succeeded {
        let builds = p.client.builds(&app).await?;
        let log = match builds.first() {
            Some(b) => p.client.build(b.id).await?.log,
            None => "no build".into(),
        };
        anyhow::bail!("{name}: {d:#?}\n{log}");
    }
    let version = d.version.clone().expect("a version");
    for h in &p.hosts {
        let body = get_app(h.port).await?;
        for e in expect.iter().chain([&version.as_str()]) {
            assert!(
                body.contains(e),
                "{name} on {}: `{e}` not in {body:?}",
                h.name
            );
        }
    }
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pyproject_src_layout_package_runs_its_console_script() -> anyhow::Result<()> {
    runs_on_two_hosts(
        "pip-src",
        "greeter-serve",
        &["hello from greeter's data file", "six 1.16.0"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_uv_project_runs_as_a_module() -> anyhow::Result<()> {
    runs_on_two_hosts(
        "uv",
        "python3 -m uvapp",
        &["hello from uvapp's data file", "idna xn--bcher-kva.example"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poetry_project_runs_as_a_module() -> anyhow::Result<()> {
    runs_on_two_hosts(
        "poetry",
        "python3 -m poetry_app",
        &["hello from poetry_app's data file", "six 1.16.0"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_npm_typescript_project_runs_what_tsc_compiled() -> anyhow::Result<()> {
    runs_on_two_hosts(
        "npm-ts",
        "node dist/server.js",
        &[
            "hello from ts-hello's data file",
            "compiled by tsc",
            "ms 2m",
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pnpm_project_runs() -> anyhow::Result<()> {
    runs_on_two_hosts(
        "pnpm",
        "node server.js",
        &[
            "hello from the pnpm app's data file",
            "is-number true",
            "ms 1m",
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_yarn_project_runs() -> anyhow::Result<()> {
    runs_on_two_hosts(
        "yarn",
        "node server.js",
        &[
            "hello from the yarn app's data file",
            "is-number true",
            "ms 1m",
        ],
    )
    .await
}
