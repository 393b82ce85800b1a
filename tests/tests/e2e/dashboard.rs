//! The dashboard's sign-in against a real AppTracker: the browser keeps an
//! opaque, expiring session, never the API token; the sign-in form cannot
//! be posted from another site; pages carry a Content-Security-Policy that
//! forbids framing; closing a session, revoking its token or letting it
//! expire ends it. And AppTracker's request logs never hold a URI's
//! secrets.

use std::time::Duration;

use deploy::{Client, CreateToken};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use slipway_tests::procs::{Proc, output};
use slipway_tests::{AppRepo, commit_hello, free_port, platform, poll};

/// A client that shows redirects instead of following them, and keeps no
/// cookies: the test sends each cookie by hand, as a browser would.
fn browser() -> anyhow::Result<reqwest::Client> {
    Ok(deploy::tls::Trust::system()
        .http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The `Set-Cookie` header that sets `name`, whole.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// An `application/x-www-form-urlencoded` body, as a browser posts a form.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A cookie's value from its `Set-Cookie` line.
fn value(set_cookie: &str) -> &str {
    let first = set_cookie.split(';').next().unwrap_or("");
    first.split_once('=').map_or("", |(_, v)| v)
}

/// The sign-in form: its anti-forgery cookie and the value in its hidden
/// field.
async fn login_form(http: &reqwest::Client, base: &str) -> anyhow::Result<(String, String)> {
    let r = http.get(format!("{base}/login")).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = set_cookie(r.headers(), "slipway_login_csrf").expect("the form sets its cookie");
    let body = r.text().await?;
    let field = body
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a hidden csrf field")
        .to_string();
    Ok((value(&cookie).to_string(), field))
}

/// Signs in with `token` through the form; the session cookie's line.
async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let (cookie, field) = login_form(http, base).await?;
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", format!("slipway_login_csrf={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token), ("csrf", &field)]))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    Ok(set_cookie(r.headers(), "slipway_session").expect("a session cookie"))
}

async fn with_session(
    http: &reqwest::Client,
    url: String,
    session: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(http
        .get(url)
        .header("cookie", format!("slipway_session={session}"))
        .send()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_keeps_a_session_never_the_token() -> anyhow::Result<()> {
    let p = platform().start().await?;
    let base = p.base_url.clone();
    let http = browser()?;

    // Every page says it may not be framed and runs no inline script.
    let r = http.get(format!("{base}/login")).send().await?;
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(
        r.headers().get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );

    // A form posted from elsewhere (no anti-forgery cookie, or another
    // value) signs nobody in.
    let (cookie, field) = login_form(&http, &base).await?;
    for (cookie, field) in [
        (None, field.clone()),
        (Some(cookie.clone()), "0".repeat(field.len())),
        (Some(cookie.clone()), String::new()),
    ] {
        let mut req = http
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("token", p.admin_token.as_str()), ("csrf", &field)]));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("slipway_login_csrf={c}"));
        }
        let r = req.send().await?;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(set_cookie(r.headers(), "slipway_session").is_none());
        assert!(r.text().await?.contains("came from another site"));
    }

    // Signing in sets a session cookie that is not the token.
    let line = sign_in(&http, &base, &p.admin_token).await?;
    let session = value(&line).to_string();
    assert!(session.starts_with("sls_"), "{line}");
    assert!(!line.contains(&p.admin_token) && !line.contains(&p.admin_token[4..]));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(attr), "{attr} in {line}");
    }
    // It lasts as long as the server keeps the session: 12 hours.
    let max_age: u64 = line
        .split("Max-Age=")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.parse().ok())
        .expect("a Max-Age");
    assert!((43_000..=43_200).contains(&max_age), "{line}");
    assert!(!line.contains("Secure"), "plain http here: {line}");

    // The session reads pages and the API (and so the live streams)...
    let r = with_session(&http, format!("{base}/"), &session).await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("content-security-policy"));
    let r = with_session(&http, format!("{base}/api/v1/apps"), &session).await?;
    assert_eq!(r.status(), StatusCode::OK);
    // ...but a cookie never writes, and the raw-token cookie of old is gone.
    let r = http
        .post(format!("{base}/api/v1/tokens"))
        .header("cookie", format!("slipway_session={session}"))
        .json(&serde_json::json!({"name": "x", "role": "viewer"}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(format!("{base}/"))
        .header("cookie", format!("slipway_token={}", p.admin_token))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "no session: sign in");

    // A session cannot open another (a stolen one cannot be renewed), and
    // agents have no sessions.
    let as_session = Client::new(base.clone()).with_token(session.clone());
    let e = as_session.create_session().await.unwrap_err();
    assert!(e.to_string().contains("not with another session"), "{e}");
    let agent = Client::new(base.clone()).with_token(p.agent_token.clone());
    assert!(agent.create_session().await.is_err());

    // Signing out closes it on the server too.
    let r = http
        .post(format!("{base}/logout"))
        .header("cookie", format!("slipway_session={session}"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(r.headers(), "slipway_session").is_some_and(|c| c.contains("Max-Age=0")));
    let r = with_session(&http, format!("{base}/api/v1/apps"), &session).await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await?.contains("session expired or was closed"));

    // Revoking the token ends its sessions.
    let alice = p
        .client
        .create_token(&CreateToken::new("alice", "viewer"))
        .await?
        .token;
    let line = sign_in(&http, &base, &alice).await?;
    let alices = value(&line).to_string();
    let r = with_session(&http, format!("{base}/api/v1/apps"), &alices).await?;
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .delete(format!("{base}/api/v1/tokens/alice"))
        .bearer_auth(&p.admin_token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = with_session(&http, format!("{base}/api/v1/apps"), &alices).await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Sign-ins are audited by the token's name; no session id or token in
    // the log.
    let audit = serde_json::to_string(&p.client.audit(&Default::default()).await?)?;
    assert!(
        audit.contains("dashboard session") && audit.contains("alice"),
        "{audit}"
    );
    for secret in [&session, &alices, &alice, &p.admin_token] {
        assert!(
            !audit.contains(secret.as_str()),
            "a secret in the audit log"
        );
    }
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_expires() -> anyhow::Result<()> {
    let p = platform()
        .configure(|c| c.session_ttl = Duration::from_secs(1))
        .start()
        .await?;
    let created = p.client.create_session().await?;
    let session = Client::new(p.base_url.clone()).with_token(created.session);
    session.apps().await?;
    poll(Duration::from_secs(15), || async {
        Ok(session.apps().await.is_err())
    })
    .await?;
    let e = session.apps().await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    p.shutdown().await
}

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");

/// A build-trigger URL and an artifact URL's signature are secrets that
/// travel in the URI: with request spans at debug level, neither reaches
/// AppTracker's log, which names the matched route instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_logs_name_the_route_never_the_uri() -> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new().prefix("slipway-logs-").tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let cfg = dir.path().join("apptracker.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )?;
    let cfg = cfg.display().to_string();
    let admin = output(
        APPTRACKER,
        &[
            "token", "create", "--config", &cfg, "--name", "ops", "--role", "admin",
        ]
        .map(String::from),
        &[],
    )
    .await?;
    let mut proc = Proc::spawn(
        "apptracker",
        APPTRACKER,
        &["serve".into(), "--config".into(), cfg],
        &[("RUST_LOG", "info,tower_http=debug,apptracker=debug".into())],
        &logs,
    )?;
    let client = Client::new(base.clone()).with_token(admin.clone());
    poll(Duration::from_secs(30), || async {
        Ok(client.apps().await.is_ok())
    })
    .await?;

    let repo = AppRepo::new(dir.path().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    client
        .register_app(&deploy::RegisterApp::new(
            "hello".parse()?,
            repo.path.display().to_string(),
        ))
        .await?;
    let http = slipway_tests::http();
    let trigger: deploy::TriggerUrl = http
        .post(format!("{base}/api/v1/apps/hello/trigger"))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;
    let secret = trigger
        .url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(secret.len() > 20, "{}", trigger.url);
    assert_eq!(http.post(&trigger.url).send().await?.status(), 202);
    let sig = "SIGNATURESECRETdoNotLog";
    let r = http
        .get(format!(
            "{base}/artifacts/hello/hello-1-abcdef1.tar.gz?exp=1&sig={sig}"
        ))
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    proc.stop().await?;

    let log = std::fs::read_to_string(&proc.log)?;
    assert!(
        log.contains(r#"route="/api/v1/trigger/{secret}""#)
            && log.contains(r#"route="/artifacts/{app}/{file}""#),
        "the request spans name their routes:\n{log}"
    );
    assert!(
        !log.contains(&secret),
        "the trigger secret is in the log:\n{log}"
    );
    assert!(
        !log.contains(sig),
        "the artifact signature is in the log:\n{log}"
    );
    assert!(!log.contains(&admin), "the admin token is in the log");
    Ok(())
}
