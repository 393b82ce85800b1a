//! Tokens and roles: requests without the right role are refused with a clear
//! JSON error, and a refused request changes nothing.

use deploy::{Client, Cluster, CreateToken, ErrorBody, Heartbeat, HostName};
use serde_json::json;
use slipway_tests::{AppRepo, Platform, commit_hello, platform};

async fn token(p: &Platform, name: &str, role: &str, cluster: Option<&str>) -> String {
    p.client
        .create_token(&CreateToken {
            name: name.into(),
            role: role.into(),
            cluster: cluster.map(|c| Cluster::parse(c).expect("a valid cluster")),
            host: None,
        })
        .await
        .expect("an admin may create tokens")
        .token
}

async fn refused(resp: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(resp.status().as_u16(), status);
    let body: ErrorBody = resp.json().await.expect("a JSON error body");
    assert_eq!(body.code, code, "{}", body.message);
    body.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_tokens_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let viewer = token(&p, "ops-viewer", "viewer", None).await;
    let deployer = token(&p, "ops-deployer", "deployer", None).await;
    let other_agent = token(&p, "agent-prod", "agent", Some("prod")).await;
    let http = slipway_tests::http();
    let url = |path: &str| format!("{}{path}", p.base_url);
    let deploy_body = json!({"app": "hello", "git_ref": "main", "cluster": "local"});

    // No token at all.
    let r = http
        .post(url("/api/v1/deploys"))
        .json(&deploy_body)
        .send()
        .await?;
    let m = refused(r, 401, "unauthorized").await;
    assert!(m.contains("Authorization"), "{m}");
    let r = http.get(url("/api/v1/deploys")).send().await?;
    refused(r, 401, "unauthorized").await;
    // A made-up token.
    let r = http
        .get(url("/api/v1/deploys"))
        .bearer_auth("slp_0000000000000000000000000000000000000000")
        .send()
        .await?;
    refused(r, 401, "unauthorized").await;

    // A viewer reads but may not deploy, build or register.
    let as_viewer = Client::new(p.base_url.clone()).with_token(viewer.clone());
    assert_eq!(as_viewer.apps().await?.len(), 1);
    let r = http
        .post(url("/api/v1/deploys"))
        .bearer_auth(&viewer)
        .json(&deploy_body)
        .send()
        .await?;
    let m = refused(r, 403, "forbidden").await;
    assert!(m.contains("ops-viewer") && m.contains("deployer"), "{m}");
    let r = http
        .post(url("/api/v1/apps/hello/builds"))
        .bearer_auth(&viewer)
        .send()
        .await?;
    refused(r, 403, "forbidden").await;
    // A deployer may not register apps or make tokens.
    let r = http
        .post(url("/api/v1/apps"))
        .bearer_auth(&deployer)
        .json(&json!({"name": "other", "git_url": "/tmp/x"}))
        .send()
        .await?;
    refused(r, 403, "forbidden").await;
    let r = http
        .post(url("/api/v1/tokens"))
        .bearer_auth(&deployer)
        .json(&json!({"name": "sneaky", "role": "admin"}))
        .send()
        .await?;
    refused(r, 403, "forbidden").await;

    // An agent of another cluster may not act for `local`.
    let as_prod_agent = Client::new(p.base_url.clone()).with_token(other_agent.clone());
    let hb = Heartbeat {
        cluster: p.cluster.clone(),
        host: HostName::parse("intruder")?,
        root: "/".into(),
        apps: vec![],
        peer: None,
    };
    let e = as_prod_agent.heartbeat(&hb).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    assert!(e.to_string().contains("`prod`"), "{e}");
    let e = as_prod_agent
        .desired_state(&p.cluster, &HostName::parse("local-1")?)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    let e = as_prod_agent
        .bus_stream(&p.cluster)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.code(), Some("forbidden"));
    // Agents are not people: no deploys with an agent token.
    let r = http
        .post(url("/api/v1/deploys"))
        .bearer_auth(&p.agent_token)
        .json(&deploy_body)
        .send()
        .await?;
    refused(r, 403, "forbidden").await;

    // Nothing changed: no deploy, no build, no app, no host, no token.
    assert!(p.client.deploys(10).await?.is_empty());
    assert!(p.client.builds(&app).await?.is_empty());
    assert_eq!(p.client.apps().await?.len(), 1);
    let hosts: Vec<String> = p
        .client
        .hosts()
        .await?
        .iter()
        .map(|h| h.name.to_string())
        .collect();
    assert_eq!(hosts, ["local-1"]);
    let names: Vec<String> = p
        .client
        .tokens()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!names.contains(&"sneaky".to_string()), "{names:?}");

    // The right token works, and the stored form is not the token.
    let as_deployer = Client::new(p.base_url.clone()).with_token(deployer.clone());
    let d = as_deployer
        .create_deploy(&deploy::CreateDeploy {
            app: app.clone(),
            version: None,
            git_ref: Some(deploy::GitRef::parse("main")?),
            cluster: p.cluster.clone(),
            hosts: None,
            strategy: Default::default(),
            max_failures: Default::default(),
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        })
        .await?;
    assert_eq!(
        p.wait_deploy(d.id).await?.status,
        deploy::DeployStatus::Succeeded
    );
    for file in ["apptracker.db", "apptracker.db-wal"] {
        let bytes = std::fs::read(p.dir().join("apptracker").join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&deployer[4..]),
            "tokens are stored hashed ({file})"
        );
    }

    // Hosts download through signed, expiring URLs: the URL alone is the
    // credential, and a tampered or expired one is refused.
    let as_agent = Client::new(p.base_url.clone()).with_token(p.agent_token.clone());
    let desired = as_agent
        .desired_state(&p.cluster, &HostName::parse("local-1")?)
        .await?;
    let artifact_url = desired.apps[0].artifact.url.clone();
    assert!(
        artifact_url.contains("expires=") && artifact_url.contains("&sig="),
        "{artifact_url}"
    );
    let ok = http.get(&artifact_url).send().await?;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.bytes().await?.len() as u64,
        desired.apps[0].artifact.size
    );
    let (base, query) = artifact_url.split_once('?').expect("a query");
    let r = http.get(base).send().await?;
    let m = refused(r, 403, "forbidden").await;
    assert!(m.contains("signed"), "{m}");
    let mut tampered = artifact_url.clone();
    let last = tampered.pop().expect("a signature");
    tampered.push(if last == '0' { '1' } else { '0' });
    refused(http.get(&tampered).send().await?, 403, "forbidden").await;
    let expires: i64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("expires="))
        .expect("expires")
        .parse()?;
    let sig = query.split("sig=").nth(1).expect("sig");
    let expired = format!("{base}?expires={}&sig={sig}", expires - 3600);
    let m = refused(http.get(&expired).send().await?, 403, "forbidden").await;
    assert!(
        m.contains("signature"),
        "a changed expiry breaks the signature: {m}"
    );

    // A revoked token stops working at once.
    let r = http
        .delete(url("/api/v1/tokens/ops-deployer"))
        .bearer_auth(&p.admin_token)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let e = as_deployer.apps().await.unwrap_err();
    assert_eq!(e.code(), Some("unauthorized"));
    p.shutdown().await
}
