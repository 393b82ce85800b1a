//! Slipway's browser tests: the website as the console, in headless
//! Chromium driven through WebDriver (`slipway_tests::browser`), against a
//! whole platform per test. Each test signs in through the form, clicks
//! what a person would, waits on what the page shows (never on sleeps) and
//! leaves screenshots of the pages it visits under
//! `$CARGO_TARGET_DIR/screenshots`.
//!
//! Without chromium and chromedriver the tests skip loudly, and fail under
//! `CI=true`; `scripts/test` installs them.

mod drift;
mod live;
mod logs;
mod release;
mod retry;
mod viewer;

use std::time::Duration;

use deploy::AppName;
use slipway_tests::browser::{Browser, Chromedriver, WAIT, chromedriver};
use slipway_tests::{AppRepo, Platform, platform};

/// The hosts most tests deploy to.
pub const THREE: [&str; 3] = ["local-1", "local-2", "local-3"];

/// A deploy's end states, as `#status[data-status]` names them.
pub const TERMINAL: [&str; 4] = ["succeeded", "failed", "partial", "cancelled"];

/// How long a deploy (with its build) may take to end on the page.
pub const DEPLOY: Duration = Duration::from_secs(90);

/// Every signed-in page's navigation.
pub const NAV: [&str; 8] = [
    "/",
    "/apps",
    "/release",
    "/builds",
    "/hosts",
    "/drift",
    "/audit",
    "/notifications",
];

/// What a browser test starts from: a chromedriver, a platform with
/// `hosts`, and the app `hello` registered from an empty repository the
/// test commits to.
pub struct Console {
    pub driver: Chromedriver,
    pub p: Platform,
    pub repo: AppRepo,
    pub app: AppName,
}

/// Starts a [`Console`], or `None` (outside CI) when there is no browser.
pub async fn console(hosts: &[&str]) -> anyhow::Result<Option<Console>> {
    let Some(driver) = chromedriver().await else {
        return Ok(None);
    };
    let p = platform().hosts(hosts).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let app = p.register("hello", &repo.path).await?;
    Ok(Some(Console {
        driver,
        p,
        repo,
        app,
    }))
}

impl Console {
    /// A browser signed in with `token`; screenshots named after `test`.
    pub async fn signed_in(&self, test: &str, token: &str) -> anyhow::Result<Browser> {
        let b = self.driver.session(test).await?;
        b.sign_in(&self.p.base_url, token).await?;
        Ok(b)
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.p.base_url)
    }
}

/// The deploy page's rows: `(host, phase)` in page order.
pub async fn phases(b: &Browser) -> anyhow::Result<Vec<(String, String)>> {
    let hosts = b.attrs("#hosts tr[data-host]", "data-host").await?;
    let phases = b.attrs("#hosts tr[data-host] .phase", "data-phase").await?;
    Ok(hosts
        .into_iter()
        .zip(phases)
        .map(|(h, p)| (h.unwrap_or_default(), p.unwrap_or_default()))
        .collect())
}

/// Waits until the deploy page shows a row per host of `hosts`, each
/// `done`.
pub async fn rows_done(b: &Browser, hosts: &[&str]) -> anyhow::Result<()> {
    b.wait_until(
        &format!("every row of {hosts:?} to reach done"),
        DEPLOY,
        async || {
            let rows = phases(b).await?;
            let mut names: Vec<&str> = rows.iter().map(|(h, _)| h.as_str()).collect();
            names.sort_unstable();
            Ok(names == hosts && rows.iter().all(|(_, p)| p == "done"))
        },
    )
    .await
}

/// Waits until the deploy page's status is one of its end states, and
/// returns it.
pub async fn final_status(b: &Browser) -> anyhow::Result<String> {
    b.wait_until("the deploy to end", DEPLOY, async || {
        let s = b.attr("#status", "data-status").await?;
        Ok(s.is_some_and(|s| TERMINAL.contains(&s.as_str())))
    })
    .await?;
    Ok(b.attr("#status", "data-status").await?.unwrap_or_default())
}

/// Waits for the window to show a deploy page other than `not` (after a
/// form's redirect) and returns its id.
pub async fn deploy_page(b: &Browser, not: Option<i64>) -> anyhow::Result<i64> {
    b.wait_until("a deploy's page", WAIT, async || {
        let id = slipway_tests::browser::deploy_id_in(&b.path().await?);
        Ok(id.is_some() && id != not && b.count("#status[data-status]").await? == 1)
    })
    .await?;
    slipway_tests::browser::deploy_id_in(&b.path().await?)
        .ok_or_else(|| anyhow::anyhow!("not a deploy page"))
}

/// An `application/x-www-form-urlencoded` body, as a browser posts a form.
pub fn form_body(fields: &[(&str, &str)]) -> String {
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
