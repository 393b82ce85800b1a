//! The website's pages under fuzzing, against a real AppTracker with a
//! deployed app: every page answers 200 to a signed-in admin for ids and
//! names that exist, and a 4xx (never a 5xx) for made-up, malformed or
//! hostile ones, in the path, in the query and in posted forms. The inputs
//! are a fixed list of nasty fragments plus random ones from a seed printed
//! on failure.

use deploy::DeployStatus;
use reqwest::StatusCode;
use slipway_tests::{AppRepo, commit_hello, platform};

/// Random cases per page, on top of the fixed ones.
const RANDOM_CASES: usize = 12;

/// Path segments and query values that must never break a page.
const NASTY: &[&str] = &[
    "0",
    "-1",
    "99999999999999999999999",
    "1e9",
    "%00",
    "%FF%FE",
    "..%2F..%2Fetc%2Fpasswd",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "%E2%80%AE",
    "a%20b",
    "%27%22%3B--",
    "(",
    "%5B",
    "%2A",
    "nope",
    "UPPER",
    "x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x",
];

/// A small random generator (xorshift) from a seed, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A percent-encoded string of 1 to 40 random bytes.
    fn segment(&mut self) -> String {
        let len = 1 + (self.next() % 40) as usize;
        (0..len)
            .map(|_| match self.next() % 4 {
                0 => format!("%{:02X}", self.next() % 256),
                _ => {
                    let c = b"abcXYZ019-_.~"[(self.next() % 13) as usize];
                    (c as char).to_string()
                }
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_answers_200_or_a_4xx_never_a_5xx() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1", "local-2"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let build = d.build_id.expect("the release built");
    // The hosts page shows hosts unreachable as AppTracker counts them.
    let hosts = p.client.hosts().await?;
    assert!(
        hosts.len() == 2 && hosts.iter().all(|h| h.alive == Some(true)),
        "{hosts:#?}"
    );
    let session = p.client.create_session().await?.session;
    let http = deploy::tls::Trust::system()
        .http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = p.base_url.clone();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        let cookie = format!("slipway_session={session}");
        async move {
            let r = http.get(&url).header("cookie", cookie).send().await?;
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            anyhow::Ok((status, body))
        }
    };

    // What exists answers 200, with the page it names.
    let good = [
        "/".to_string(),
        "/apps".to_string(),
        "/apps/hello".to_string(),
        "/release".to_string(),
        "/release?app=hello&cluster=local&hosts=local-1".to_string(),
        format!("/deploys/{}", d.id),
        "/builds".to_string(),
        format!("/builds/{build}"),
        "/hosts".to_string(),
        "/hosts/local/local-1".to_string(),
        "/hosts/local/local-2?app=hello".to_string(),
        "/drift".to_string(),
        "/audit".to_string(),
        "/notifications".to_string(),
    ];
    for path in &good {
        let (status, body) = get(path.clone()).await?;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        assert!(body.contains("<nav class=\"main\">"), "GET {path}: {body}");
    }

    // Every placeholder of every page, with nasty and random values.
    let seed = {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        u64::from_le_bytes(b) | 1
    };
    println!("page fuzz seed: {seed}");
    let mut rng = Rng(seed);
    let shapes: &[&str] = &[
        "/apps/{}",
        "/deploys/{}",
        "/builds/{}",
        "/hosts/{}/local-1",
        "/hosts/local/{}",
        "/hosts/local/local-1?app={}",
        "/hosts/local/local-1/log/{}?offset=0",
        "/hosts/local/local-1/log/hello?offset={}",
        "/release?app={}",
        "/release?app=hello&cluster={}",
        "/release?app=hello&cluster=local&hosts={}",
        "/audit?before={}",
        "/audit?cursor={}",
        "/audit?limit={}",
        "/{}",
    ];
    let mut bad = Vec::new();
    for shape in shapes {
        let mut values: Vec<String> = NASTY.iter().map(|s| s.to_string()).collect();
        values.extend((0..RANDOM_CASES).map(|_| rng.segment()));
        for v in values {
            let path = shape.replace("{}", &v);
            let (status, body) = get(path.clone()).await?;
            if status.is_server_error() {
                bad.push(format!(
                    "GET {path} -> {status}: {}",
                    body.chars().take(300).collect::<String>()
                ));
            }
        }
    }

    // Forms with missing, malformed and hostile fields: refused, never a
    // 5xx, and nothing started.
    let csrf = csrf_of(&get("/".into()).await?.1);
    let before = p.client.deploys(100).await?.len();
    let forms: &[(&str, String)] = &[
        ("/release", format!("csrf={csrf}")),
        (
            "/release",
            format!("csrf={csrf}&app=hello&cluster=local&hosts=%28&git_ref=main"),
        ),
        (
            "/release",
            format!("csrf={csrf}&app=%3Cb%3E&cluster=local&git_ref=main"),
        ),
        (
            "/release",
            format!("csrf={csrf}&app=hello&cluster=nowhere&version=9-fffffff"),
        ),
        (
            "/release",
            format!("csrf={csrf}&app=hello&cluster=local&git_ref=main&batch=lots"),
        ),
        (
            "/release",
            "app=hello&cluster=local&git_ref=main".to_string(),
        ),
        ("/drift/sync", format!("csrf={csrf}&app=hello")),
        ("/drift/sync", format!("csrf={csrf}&app=nope&cluster=local")),
        ("/apps/nope/rollback", format!("csrf={csrf}&cluster=local")),
        ("/apps/hello/rollback", format!("csrf={csrf}&cluster=%FF")),
        ("/deploys/999999/retry", format!("csrf={csrf}")),
        ("/deploys/abc/cancel", format!("csrf={csrf}")),
        ("/deploys/999999/continue", format!("csrf={csrf}")),
        (
            "/notifications",
            format!("csrf={csrf}&url=ftp%3A%2F%2Fx&secret=s"),
        ),
        ("/notifications/abc/delete", format!("csrf={csrf}")),
        ("/release", "%%%garbage".to_string()),
    ];
    for (path, body) in forms {
        let r = http
            .post(format!("{}{path}", p.base_url))
            .header("cookie", format!("slipway_session={session}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await?;
        let status = r.status();
        if !status.is_client_error() {
            bad.push(format!(
                "POST {path} {body:?} -> {status}: {}",
                r.text().await.unwrap_or_default()
            ));
        }
    }
    assert_eq!(
        p.client.deploys(100).await?.len(),
        before,
        "a refused form started a deploy"
    );
    assert!(bad.is_empty(), "seed {seed}:\n{}", bad.join("\n"));
    p.shutdown().await
}

/// The page's anti-forgery value, from its `<meta name="csrf">`.
fn csrf_of(page: &str) -> String {
    page.split(r#"<meta name="csrf" content=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a signed-in page carries its csrf")
        .to_string()
}
