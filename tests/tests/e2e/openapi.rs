//! The API's quality: the OpenAPI document AppTracker serves is valid, a
//! schema-driven fuzz run (schemathesis) against the live API finds no
//! server error, lists page with `limit` and `X-Next-Cursor`, and bad paging
//! input is a JSON `400`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use deploy::{
    AppName, Client, CreateToken, ErrorBody, Heartbeat, HostName, NEXT_CURSOR_HEADER, Page,
    PageQuery, RegisterApp, TokenInfo,
};
use slipway_tests::{AppRepo, commit_hello, platform, services};

/// Test cases per operation and phase: enough to reach every handler with
/// valid and invalid input, few enough for the run to take well under a
/// minute on two cores.
const MAX_EXAMPLES: &str = "25";

/// Operations left out of the fuzz run, by operation id (the handler's
/// name):
/// - the two server-sent event streams never end by themselves;
/// - `DELETE /api/v1/tokens/{name}` revokes the fuzzer's own token
///   (schemathesis feeds names it read from `GET /api/v1/tokens` into it),
///   after which every request is a 401 and the run tests nothing;
/// - `POST /api/v1/apps` would register apps with whatever `git_url` the
///   fuzzer makes up, and a later build request would have packer fetch it
///   (tests reach nothing but loopback). Registration is tested elsewhere,
///   and the fuzzer gets one app registered here, from a local repository;
/// - `DELETE /api/v1/apps/{app}` would remove that app (its name, `hello`, is
///   the schema's example) and leave the rest of the run only 404s; removal
///   is tested in apptracker (`http/routes/tests.rs`);
/// - `POST /api/v1/apps/{app}/logs` waits up to 5 s for a grabber the
///   hosts registered here do not run, so each valid case costs that wait
///   (about 100 s a run); `e2e logs::` reads, follows and refuses for real.
const EXCLUDED: &[&str] = &[
    "read_log",
    "deploy_stream",
    "bus_stream",
    "delete_token",
    "register_app",
    "remove_app",
];

#[tokio::test]
async fn schemathesis_finds_no_server_error() -> anyhow::Result<()> {
    let Some(st) = services::schemathesis() else {
        return Ok(());
    };
    let p = platform().start().await?;
    // The one app the fuzzer can build and deploy: a local repository.
    let repo = AppRepo::new(p.dir().join("repos/hello"))?;
    commit_hello(&repo, "fuzzed", true)?;
    p.client
        .register_app(&RegisterApp::new(
            AppName::parse("hello")?,
            repo.path.display().to_string(),
        ))
        .await?;

    // The document itself, checked by a validator of its own when the
    // venv has one (schemathesis checks it too, as it loads it).
    let doc = slipway_tests::http()
        .get(format!("{}/api/v1/openapi.json", p.base_url))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let doc_path = p.dir().join("openapi.json");
    std::fs::write(&doc_path, &doc)?;
    if let Some(validator) = st.parent().map(|bin| bin.join("openapi-spec-validator"))
        && validator.exists()
    {
        let out = std::process::Command::new(&validator)
            .arg(&doc_path)
            .output()?;
        assert!(
            out.status.success(),
            "openapi-spec-validator refuses the document:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let started = Instant::now();
    let out = run_schemathesis(&st, &p.base_url, &p.admin_token, p.dir()).await?;
    let took = started.elapsed();
    eprintln!("schemathesis ran for {took:.1?}");
    assert!(
        out.status.success(),
        "schemathesis found problems ({took:.1?}):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    p.shutdown().await
}

async fn run_schemathesis(
    st: &Path,
    base_url: &str,
    token: &str,
    dir: &Path,
) -> anyhow::Result<std::process::Output> {
    let mut cmd = tokio::process::Command::new(st);
    cmd.arg("run")
        .arg(format!("{base_url}/api/v1/openapi.json"))
        .args(["--checks", "not_a_server_error"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--phases", "examples,coverage,fuzzing"])
        // Reproducible: the same cases every run.
        .args(["--seed", "1"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "10"])
        // One worker: with two, hypothesis (6.x) sometimes trips over its own
        // lambda-source cache between threads and reports a flaky error.
        .args(["--workers", "1"])
        .arg("--no-color")
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for id in EXCLUDED {
        cmd.args(["--exclude-operation-id", id]);
    }
    let run = cmd.output();
    match tokio::time::timeout(Duration::from_secs(300), run).await {
        Ok(out) => Ok(out?),
        Err(_) => anyhow::bail!("schemathesis did not finish within 5 minutes"),
    }
}

/// Pages of a list are disjoint, in order, and together the whole list;
/// the last has no next cursor; the typed client's `tokens()` and `hosts()`
/// follow the cursors.
#[tokio::test]
async fn lists_page_by_cursor() -> anyhow::Result<()> {
    let p = platform().start().await?;
    for i in 0..5 {
        p.client
            .create_token(&CreateToken {
                name: format!("viewer-{i}"),
                role: "viewer".into(),
                cluster: None,
                host: None,
            })
            .await?;
    }
    let agent = Client::new(p.base_url.clone()).with_token(p.agent_token.clone());
    for i in 0..5 {
        agent
            .heartbeat(&Heartbeat {
                cluster: p.cluster.clone(),
                host: HostName::parse(format!("web-{i}"))?,
                root: "/srv".into(),
                apps: Vec::new(),
                peer: None,
            })
            .await?;
    }

    let all: Vec<TokenInfo> = p.client.tokens().await?;
    assert_eq!(all.len(), 7, "two made by the platform, five here");
    let mut paged = Vec::new();
    let mut query = PageQuery::first(2);
    let mut pages = 0;
    loop {
        let page: Page<TokenInfo> = p.client.page("/api/v1/tokens", &query).await?;
        assert!(page.items.len() <= 2);
        pages += 1;
        paged.extend(page.items);
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 4, "2 + 2 + 2 + 1");
    assert_eq!(paged, all);

    let hosts = p.client.hosts().await?;
    assert_eq!(hosts.len(), 5);
    let first: Page<deploy::Host> = p.client.page("/api/v1/hosts", &PageQuery::first(3)).await?;
    assert_eq!(first.items, hosts[..3]);
    let rest: Page<deploy::Host> = p
        .client
        .page(
            "/api/v1/hosts",
            &PageQuery {
                limit: Some(3),
                cursor: first.next.clone(),
            },
        )
        .await?;
    assert_eq!(rest.items, hosts[3..]);
    assert_eq!(rest.next, None);

    // The cursor is a header; the body stays a bare array.
    let http = slipway_tests::http();
    let resp = http
        .get(format!("{}/api/v1/tokens?limit=1", p.base_url))
        .bearer_auth(&p.admin_token)
        .send()
        .await?;
    assert!(resp.headers().contains_key(NEXT_CURSOR_HEADER));
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body.as_array().map(Vec::len), Some(1));

    // Bad paging input is a JSON 400 on every list.
    for list in [
        "/api/v1/apps",
        "/api/v1/builds",
        "/api/v1/deploys",
        "/api/v1/hosts",
        "/api/v1/tokens",
        "/api/v1/audit",
    ] {
        for bad in [
            "limit=0",
            "limit=-1",
            "limit=abc",
            "limit=1001",
            "limit=99999999999999999999",
            "cursor=%00",
        ] {
            let resp = http
                .get(format!("{}{list}?{bad}", p.base_url))
                .bearer_auth(&p.admin_token)
                .send()
                .await?;
            assert_eq!(resp.status(), 400, "{list}?{bad}");
            let err: ErrorBody = resp.json().await?;
            assert_eq!(err.code, "invalid_input", "{list}?{bad}: {}", err.message);
        }
    }
    p.shutdown().await
}

/// PostgreSQL's text cannot hold NUL: a JSON body's NUL becomes U+FFFD,
/// names from paths and queries with control characters are refused;
/// never a 500 from the database.
#[tokio::test]
async fn nul_characters_are_not_server_errors_on_postgres() -> anyhow::Result<()> {
    let Some(pg) = services::postgres().await else {
        return Ok(());
    };
    let url = pg.url.clone();
    let p = platform()
        .configure(move |c| c.database_url = Some(url))
        .start()
        .await?;
    let http = slipway_tests::http();
    let json = |method: reqwest::Method, path: &str, body: &str| {
        http.request(method, format!("{}{path}", p.base_url))
            .bearer_auth(&p.admin_token)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let cases = [
        (
            json(
                reqwest::Method::POST,
                "/api/v1/tokens",
                r#"{"name":"a\u0000b","role":"viewer"}"#,
            ),
            201,
        ),
        (
            json(
                reqwest::Method::POST,
                "/api/v1/tokens",
                r#"{"name":"a\tb","role":"viewer"}"#,
            ),
            400,
        ),
        (
            json(
                reqwest::Method::POST,
                "/api/v1/hosts/heartbeat",
                r#"{"cluster":"local","host":"web-1","root":"/srv\u0000x","apps":[]}"#,
            ),
            200,
        ),
        (
            json(reqwest::Method::DELETE, "/api/v1/tokens/a%00b", ""),
            404,
        ),
        (
            json(reqwest::Method::GET, "/api/v1/audit?actor=a%00b", ""),
            400,
        ),
        (
            json(
                reqwest::Method::POST,
                "/api/v1/builds/1/lease",
                r#"{"worker":"w\u0000"}"#,
            ),
            // `w\u{fffd}` holds no claim on build 1.
            409,
        ),
        (
            json(
                reqwest::Method::PUT,
                "/api/v1/builds/1/artifact?worker=w%00",
                "",
            )
            .header("x-slipway-sha256", "a".repeat(64))
            // Well-formed: 64 zero bytes in base64.
            .header("x-slipway-signature", format!("{}==", "A".repeat(86))),
            // A worker name with a control character is refused before
            // anything is looked up.
            400,
        ),
    ];
    for (req, status) in cases {
        let req = req.build()?;
        let what = format!("{} {}", req.method(), req.url());
        let resp = http.execute(req).await?;
        assert_eq!(resp.status().as_u16(), status, "{what}");
        if status >= 400 {
            let err: ErrorBody = resp.json().await?;
            assert_ne!(err.code, "internal", "{what}");
        }
    }
    let hosts = p.client.hosts().await?;
    assert_eq!(hosts[0].root, "/srv\u{fffd}x");
    let tokens = p.client.tokens().await?;
    assert!(tokens.iter().any(|t| t.name == "a\u{fffd}b"), "{tokens:?}");
    p.shutdown().await
}
