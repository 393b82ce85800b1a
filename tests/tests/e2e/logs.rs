//! Logs from anywhere: an app's log on a host, read through AppTracker
//! (relayed by the host's grabber), and followed from an offset; viewers
//! may not read logs.

use deploy::{DeployAction, DeployStatus, LogRequest, OperateApp};
use slipway_tests::{AppRepo, commit_hello, platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_apps_log_is_read_and_followed_through_apptracker() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1", "local-2"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");

    let host = deploy::HostName::parse("local-2")?;
    let mut req = LogRequest {
        cluster: p.cluster.clone(),
        host: host.clone(),
        offset: None,
        max_bytes: None,
    };
    let first = p.client.read_log(&app, &req).await?;
    let port = p.host("local-2").port;
    assert!(
        first.text.contains(&format!("starting A on {port}")),
        "{first:#?}"
    );
    assert_eq!(first.host, host);
    // Following: from where the last piece ended, only what is new.
    req.offset = Some(first.next_offset);
    let nothing = p.client.read_log(&app, &req).await?;
    assert_eq!(
        (nothing.text.as_str(), nothing.offset),
        ("", first.next_offset)
    );
    let restart = p
        .client
        .operate(
            &app,
            DeployAction::Restart,
            &OperateApp {
                cluster: p.cluster.clone(),
                hosts: Some(deploy::HostSelector::parse("local-2")?),
                batch: None,
                confirm: None,
            },
        )
        .await?;
    assert_eq!(
        p.wait_deploy(restart.id).await?.status,
        DeployStatus::Succeeded
    );
    let more = p.client.read_log(&app, &req).await?;
    assert!(
        more.text.contains(&format!("starting A on {port}")),
        "{more:#?}"
    );
    assert!(
        !more.text.contains(&first.text),
        "the old lines again: {more:#?}"
    );

    // Unknown hosts and apps with no log say so; viewers are refused.
    let e = p
        .client
        .read_log(
            &app,
            &LogRequest {
                host: deploy::HostName::parse("local-9")?,
                ..req.clone()
            },
        )
        .await
        .expect_err("no such host");
    assert!(e.to_string().contains("no host `local-9`"), "{e}");
    let viewer = p
        .client
        .create_token(&deploy::CreateToken::new("log-viewer", "viewer"))
        .await?;
    let as_viewer = deploy::Client::new(p.base_url.clone()).with_token(viewer.token);
    let e = as_viewer.read_log(&app, &req).await.expect_err("a viewer");
    assert!(
        e.to_string().contains("403") || e.to_string().contains("forbidden"),
        "{e}"
    );
    p.shutdown().await
}
