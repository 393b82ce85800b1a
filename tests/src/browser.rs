//! The browser tests' harness: Debian's headless Chromium driven through
//! `chromedriver` (WebDriver, with fantoccini), one chromedriver per test
//! started on a free port and killed with every browser it started when
//! dropped; a [`Browser`] session with the few moves the tests make (sign
//! in, fill and submit a form, read attributes and text), waits on DOM
//! conditions with a deadline whose failure shows the page, and screenshots
//! under the target directory.
//!
//! Missing `chromedriver` or `chromium` fails the test under `CI=true`;
//! elsewhere the test says so loudly and skips (as for Redis and
//! PostgreSQL in [`crate::services`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// `chromedriver`'s path, when not on `PATH` or in `/usr/bin`.
pub const CHROMEDRIVER_ENV: &str = "SLIPWAY_CHROMEDRIVER";
/// The browser's path, when not `/usr/bin/chromium` or on `PATH`.
pub const CHROMIUM_ENV: &str = "SLIPWAY_CHROMIUM";

/// How long a page may take to show what a test waits for, unless it says.
pub const WAIT: Duration = Duration::from_secs(30);

/// An executable: `env`'s value, else `name` on `PATH`, else `fallback`.
fn find_executable(env: &str, name: &str, fallback: &str) -> Option<PathBuf> {
    let is_exe = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| is_exe(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name));
    on_path
        .chain(std::iter::once(PathBuf::from(fallback)))
        .find(|p| is_exe(p))
}

/// Where screenshots go: `$CARGO_TARGET_DIR/screenshots`, else the
/// workspace's `target/screenshots`.
pub fn screenshots_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace.join(dir).join("screenshots"),
        None => workspace.join("target").join("screenshots"),
    }
}

/// A `chromedriver` of one test's own. Dropping it kills its process group:
/// chromedriver and every browser it started (a browser outlives a killed
/// chromedriver otherwise).
pub struct Chromedriver {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    chromium: PathBuf,
    /// The browsers' profiles (one directory per session) and the log.
    dir: tempfile::TempDir,
    sessions: std::sync::atomic::AtomicUsize,
}

/// Starts a chromedriver, or `None` (outside CI) when it or the browser is
/// not installed.
pub async fn chromedriver() -> Option<Chromedriver> {
    let found = (
        find_executable(CHROMEDRIVER_ENV, "chromedriver", "/usr/bin/chromedriver"),
        find_executable(CHROMIUM_ENV, "chromium", "/usr/bin/chromium"),
    );
    let (Some(driver), Some(chromium)) = found else {
        let msg = format!(
            "chromium and chromedriver are not installed (chromedriver: {:?}, chromium: {:?}); \
             run ./scripts/test, which installs them (apt-get install chromium chromium-driver), \
             or set {CHROMEDRIVER_ENV} and {CHROMIUM_ENV}",
            found.0, found.1
        );
        if crate::services::in_ci() {
            panic!("CI=true and {msg}");
        }
        eprintln!("\n!!! SKIPPING: {msg}\n");
        return None;
    };
    match Chromedriver::start(&driver, chromium).await {
        Ok(d) => Some(d),
        Err(e) => panic!("chromedriver {} did not start: {e:#}", driver.display()),
    }
}

impl Chromedriver {
    async fn start(driver: &Path, chromium: PathBuf) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-browser-")
            .tempdir()?;
        let port = crate::free_port()?;
        let log = std::fs::File::create(dir.path().join("chromedriver.log"))?;
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            // A group of its own, so the browsers it starts die with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", driver.display()))?;
        let me = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
            dir,
            sessions: Default::default(),
        };
        let status = format!("{}/status", me.url);
        let http = crate::http();
        crate::poll(Duration::from_secs(20), || async {
            let r = http.get(&status).send().await?;
            let v: Value = r.json().await?;
            Ok(v["value"]["ready"] == json!(true))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; its log:\n{}", me.log()))?;
        Ok(me)
    }

    /// chromedriver's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// A new headless browser (a session with a fresh profile, so no
    /// cookies) whose screenshots are named after `test`.
    pub async fn session(&self, test: &str) -> anyhow::Result<Browser> {
        let n = self
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = self.dir.path().join(format!("profile-{n}"));
        let options = json!({
            "binary": self.chromium,
            "args": [
                "--headless=new",
                // Root (as in CI) cannot use Chromium's sandbox.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        let mut caps = fantoccini::wd::Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .map_err(|e| {
                anyhow::anyhow!("no browser session: {e}; chromedriver:\n{}", self.log())
            })?;
        let shots = screenshots_dir();
        std::fs::create_dir_all(&shots)
            .with_context(|| format!("cannot create {}", shots.display()))?;
        Ok(Browser {
            client,
            test: test.to_string(),
            shots,
        })
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group's id is chromedriver's pid (process_group(0)).
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One browser session (a window) of a test.
pub struct Browser {
    pub client: Client,
    test: String,
    shots: PathBuf,
}

impl Browser {
    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("cannot open {url}"))
    }

    /// Loads the page again.
    pub async fn reload(&self) -> anyhow::Result<()> {
        Ok(self.client.refresh().await?)
    }

    /// The address the window shows.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// The page's path (`/deploys/7`).
    pub async fn path(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.path().to_string())
    }

    /// Signs in at `{base}/login` with `token` through the form, as a person
    /// would, and waits for the overview (`/`).
    pub async fn sign_in(&self, base: &str, token: &str) -> anyhow::Result<()> {
        self.goto(&format!("{base}/login")).await?;
        self.fill("input[name=token]", token).await?;
        self.click("form[action='/login'] button[type=submit]")
            .await?;
        self.wait_until("the overview after signing in", WAIT, async || {
            Ok(self.path().await? == "/" && self.count("input[name=token]").await? == 0)
        })
        .await
    }

    /// Writes a PNG of the window to `<screenshots>/<test>-<name>.png` and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the
    /// page and returns what it returns.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// The page's visible text.
    pub async fn text(&self) -> anyhow::Result<String> {
        let v = self
            .js(
                "return document.body ? document.body.innerText : '';",
                vec![],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// The text of the first element `css` selects, if any.
    pub async fn text_of(&self, css: &str) -> anyhow::Result<Option<String>> {
        let v = self
            .js(
                "var e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        let v = self
            .js(
                "return document.querySelectorAll(arguments[0]).length;",
                vec![json!(css)],
            )
            .await?;
        Ok(v.as_u64().unwrap_or(0) as usize)
    }

    /// Attribute `attr` of every element `css` selects, in document order.
    pub async fn attrs(&self, css: &str, attr: &str) -> anyhow::Result<Vec<Option<String>>> {
        let v = self
            .js(
                "var a = arguments[1]; return Array.from(document.querySelectorAll(arguments[0])).map(function (e) { return e.getAttribute(a); });",
                vec![json!(css), json!(attr)],
            )
            .await?;
        Ok(v.as_array()
            .map(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }

    /// Attribute `attr` of the first element `css` selects.
    pub async fn attr(&self, css: &str, attr: &str) -> anyhow::Result<Option<String>> {
        Ok(self.attrs(css, attr).await?.into_iter().next().flatten())
    }

    /// Waits for an element `css` selects and returns it.
    pub async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.wait_until(&format!("an element `{css}`"), WAIT, async || {
            Ok(self.count(css).await? > 0)
        })
        .await?;
        Ok(self.client.find(Locator::Css(css)).await?)
    }

    /// Clicks the element `css` selects (waiting for it).
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.find(css)
            .await?
            .click()
            .await
            .with_context(|| format!("cannot click `{css}`"))
    }

    /// Replaces the value of the input `css` selects with `value`, typed as
    /// keys (so the page's input handlers run).
    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let e = self.find(css).await?;
        e.clear()
            .await
            .with_context(|| format!("cannot clear `{css}`"))?;
        // Clearing is not typing: tell the page's handlers, as typing would.
        self.js(
            "var e = document.querySelector(arguments[0]); \
             e.dispatchEvent(new Event('input', { bubbles: true })); \
             e.dispatchEvent(new Event('change', { bubbles: true })); return null;",
            vec![json!(css)],
        )
        .await?;
        if !value.is_empty() {
            e.send_keys(value)
                .await
                .with_context(|| format!("cannot type into `{css}`"))?;
        }
        Ok(())
    }

    /// Picks the option with `value` in the `<select>` `css` selects.
    pub async fn select(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let e = self.find(css).await?;
        let options = self.attrs(&format!("{css} option"), "value").await?;
        anyhow::ensure!(
            options.iter().any(|o| o.as_deref() == Some(value)),
            "`{css}` has no option {value:?}; it has {options:?}"
        );
        e.select_by(Locator::Css(&format!("option[value={}]", json!(value))))
            .await
            .with_context(|| format!("cannot pick {value:?} in `{css}`"))
    }

    /// Marks the loaded page (a global variable), to tell later whether it
    /// was reloaded or left: [`Browser::still_marked`].
    pub async fn mark(&self) -> anyhow::Result<()> {
        self.js("window.__slipwayMarker = 1; return null;", vec![])
            .await?;
        Ok(())
    }

    /// Whether the page marked by [`Browser::mark`] is still the one shown.
    pub async fn still_marked(&self) -> anyhow::Result<bool> {
        let v = self
            .js("return window.__slipwayMarker === 1;", vec![])
            .await?;
        Ok(v == json!(true))
    }

    /// The value of the `<meta name="csrf">` tag.
    pub async fn csrf(&self) -> anyhow::Result<Option<String>> {
        self.attr("meta[name=csrf]", "content").await
    }

    /// A cookie's value (HttpOnly ones too: WebDriver sees them).
    pub async fn cookie(&self, name: &str) -> anyhow::Result<Option<String>> {
        let all = self.client.get_all_cookies().await?;
        Ok(all
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_string()))
    }

    /// Calls `check` until it says yes; after `timeout`, fails with `what`,
    /// the last error, the address and the page's text (and a screenshot).
    pub async fn wait_until<F>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> anyhow::Result<()>
    where
        F: AsyncFnMut() -> anyhow::Result<bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let last_err = match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => None,
                Err(e) => Some(e),
            };
            if Instant::now() > deadline {
                return Err(self.timed_out(what, timeout, last_err).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The failure of a wait: what was awaited and what the page shows.
    async fn timed_out(
        &self,
        what: &str,
        timeout: Duration,
        last_err: Option<anyhow::Error>,
    ) -> anyhow::Error {
        let url = self
            .url()
            .await
            .unwrap_or_else(|e| format!("(no address: {e})"));
        let mut text = self
            .text()
            .await
            .unwrap_or_else(|e| format!("(no text: {e})"));
        if text.len() > 6000 {
            let mut cut = 6000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n[…]");
        }
        let shot = match self.screenshot(&format!("timeout-{}", slug(what))).await {
            Ok(p) => format!("screenshot {}", p.display()),
            Err(e) => format!("no screenshot: {e}"),
        };
        let err = last_err.map_or(String::new(), |e| format!("; last error: {e:#}"));
        anyhow::anyhow!("waited {timeout:?} for {what}{err}\n{shot}\npage {url} shows:\n{text}\n")
    }

    /// Ends the session (the browser quits).
    pub async fn close(self) -> anyhow::Result<()> {
        Ok(self.client.close().await?)
    }
}

/// A file-name-safe form of `what`.
fn slug(what: &str) -> String {
    let s: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-")
}

/// The deploy id in a `/deploys/{id}` path.
pub fn deploy_id_in(path: &str) -> Option<i64> {
    path.strip_prefix("/deploys/")?
        .trim_end_matches('/')
        .parse()
        .ok()
}
