//! The soak's parts (`bin/soak.rs` drives them): a seeded random plan of
//! deploys and the faults they carry, and the figures sampled along the way
//! (this process's file descriptors, threads and memory, the hosts' app
//! processes, zombies, and the row count of every AppTracker table).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use deploy::{HostName, HostSelector, Portion, Strategy};
use serde::Serialize;

pub mod checks;

/// SplitMix64: small and seeded, so a soak's plan (and its fault
/// schedule) is reproduced by its `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform between `lo` and `hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + hi.saturating_sub(lo).mul_f64(self.unit())
    }

    /// `k` distinct items of `items`, in their order.
    pub fn pick<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut idx: Vec<usize> = (0..items.len()).collect();
        for i in (1..idx.len()).rev() {
            let j = self.below(i + 1);
            idx.swap(i, j);
        }
        let mut chosen: Vec<usize> = idx.into_iter().take(k).collect();
        chosen.sort_unstable();
        chosen.into_iter().map(|i| items[i].clone()).collect()
    }
}

/// How often each kind of deploy comes up (each a probability).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Mix {
    /// A version that exits at once (its health check fails) on a few of
    /// the hosts it goes to.
    pub failing: f64,
    /// To a host regex (some hosts), not the whole cluster.
    pub subset: f64,
    /// Rolling in batches of a quarter, rather than all at once.
    pub rolling: f64,
    /// Of the rolling ones: `rollback_on_failure`.
    pub rollback: f64,
}

/// One deploy of the plan: a new version of one app and how it goes out.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedDeploy {
    /// Its place in the plan.
    pub n: usize,
    pub app: usize,
    /// Hosts on which this version exits at once.
    pub failing_on: Vec<HostName>,
    /// The host regex, when not every host.
    pub hosts: Option<String>,
    pub strategy: Strategy,
    pub max_failures: Portion,
    pub rollback_on_failure: bool,
}

/// `deploys` deploys spread at random over `apps` apps.
pub fn plan(
    rng: &mut Rng,
    deploys: usize,
    apps: usize,
    hosts: &[HostName],
    mix: Mix,
) -> anyhow::Result<Vec<PlannedDeploy>> {
    let mut out = Vec::with_capacity(deploys);
    for n in 0..deploys {
        let app = rng.below(apps);
        // A subset: the hosts whose name ends in one of 3 to 7 digits.
        let selector = if rng.chance(mix.subset) {
            let k = 3 + rng.below(5);
            let digits: String = rng
                .pick(&['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], k)
                .into_iter()
                .collect();
            Some(format!("host-[0-9]*[{digits}]"))
        } else {
            None
        };
        let targets: Vec<HostName> = match &selector {
            Some(s) => {
                let sel = HostSelector::parse(s.as_str())?;
                hosts.iter().filter(|h| sel.matches(h)).cloned().collect()
            }
            None => hosts.to_vec(),
        };
        // One host in 25 of those it goes to, at least one.
        let failing_on = if rng.chance(mix.failing) && !targets.is_empty() {
            let k = 1 + rng.below((targets.len() / 25).max(1));
            rng.pick(&targets, k)
        } else {
            Vec::new()
        };
        let rolling = rng.chance(mix.rolling);
        let (strategy, max_failures, rollback_on_failure) = if rolling {
            let batch = if rng.chance(0.5) {
                Portion::Percent(25)
            } else {
                Portion::Count(u32::try_from((targets.len() / 4).max(1))?)
            };
            let max_failures = Portion::Count(u32::try_from(rng.below(3))?);
            (
                Strategy::Rolling {
                    batch,
                    bake_ms: 0,
                    max_unavailable: None,
                },
                max_failures,
                rng.chance(mix.rollback),
            )
        } else {
            (Strategy::AllAtOnce, Portion::Count(0), false)
        };
        out.push(PlannedDeploy {
            n,
            app,
            failing_on,
            hosts: selector,
            strategy,
            max_failures,
            rollback_on_failure,
        });
    }
    Ok(out)
}

/// What was measured at one point of the soak.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// `installed`, `after N`, `idle`, `end`.
    pub label: String,
    pub deploys_done: usize,
    pub elapsed_s: f64,
    /// Open file descriptors of this process (AppTracker and every
    /// in-process grabber).
    pub fds: u64,
    pub threads: u64,
    pub rss_mib: f64,
    /// `sleep` processes (the apps) running from the hosts' roots.
    pub app_processes: usize,
    /// Every live process running from the hosts' roots (apps, their
    /// shims, a failing version's shell on its way out).
    pub host_processes: usize,
    /// Children of this process that exited and were never reaped.
    pub zombies: usize,
    /// Rows per AppTracker table.
    pub tables: BTreeMap<String, i64>,
}

impl Sample {
    pub fn rows(&self, table: &str) -> i64 {
        self.tables.get(table).copied().unwrap_or(0)
    }
}

/// Reads AppTracker's tables (SQLite or PostgreSQL) beside it.
pub struct Tables {
    pool: sqlx::AnyPool,
    sqlite: bool,
}

impl Tables {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .context("cannot open AppTracker's database")?;
        Ok(Self {
            pool,
            sqlite: url.starts_with("sqlite:"),
        })
    }

    /// Every table's row count (sqlx's migration table left out).
    pub async fn counts(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let list = if self.sqlite {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        } else {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        };
        let names: Vec<String> = sqlx::query_scalar(list).fetch_all(&self.pool).await?;
        let mut out = BTreeMap::new();
        for name in names {
            // Names come from the catalogue; only plain ones are counted.
            if name.starts_with("_sqlx")
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                continue;
            }
            let sql = format!("SELECT COUNT(*) FROM {name}");
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&self.pool)
                .await
                .with_context(|| format!("cannot count the rows of {name}"))?;
            out.insert(name, n);
        }
        Ok(out)
    }
}

/// Takes a sample: `/proc` for this process and the hosts' processes,
/// the database for the tables.
pub async fn sample(
    label: impl Into<String>,
    deploys_done: usize,
    started: Instant,
    hosts_dir: &Path,
    tables: &Tables,
) -> anyhow::Result<Sample> {
    let dir = hosts_dir.to_path_buf();
    let (apps, all, zombies) = tokio::task::spawn_blocking(move || {
        let under = deploy::procfs::processes_under(&dir);
        let apps = under
            .iter()
            .filter(|(s, _)| deploy::procfs::comm(s.pid).as_deref() == Some("sleep"))
            .count();
        (apps, under.len(), zombie_children(std::process::id()))
    })
    .await?;
    let me = deploy::procfs::self_metrics().context("cannot read /proc/self")?;
    Ok(Sample {
        label: label.into(),
        deploys_done,
        elapsed_s: started.elapsed().as_secs_f64(),
        fds: me.open_fds,
        threads: me.threads,
        rss_mib: me.resident_bytes as f64 / (1024.0 * 1024.0),
        app_processes: apps,
        host_processes: all,
        zombies,
        tables: tables.counts().await?,
    })
}

/// Zombie processes whose parent is `parent`.
fn zombie_children(parent: u32) -> usize {
    deploy::procfs::pids()
        .filter(|pid| {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the command name: state, then the parent's pid.
            let Some((_, rest)) = text.rsplit_once(')') else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(parent)
        })
        .count()
}

/// Prints the samples as a table: the process's figures, then the rows of
/// the tables that changed.
pub fn print_samples(samples: &[Sample]) {
    println!(
        "\n{:<12} {:>7} {:>8} {:>6} {:>7} {:>8} {:>6} {:>6} {:>8}",
        "sample", "deploys", "time_s", "fds", "threads", "rss_mib", "apps", "procs", "zombies"
    );
    for s in samples {
        println!(
            "{:<12} {:>7} {:>8.1} {:>6} {:>7} {:>8.1} {:>6} {:>6} {:>8}",
            s.label,
            s.deploys_done,
            s.elapsed_s,
            s.fds,
            s.threads,
            s.rss_mib,
            s.app_processes,
            s.host_processes,
            s.zombies
        );
    }
    let Some(first) = samples.first() else {
        return;
    };
    let Some(last) = samples.last() else {
        return;
    };
    let changed: Vec<&String> = last
        .tables
        .keys()
        .filter(|t| samples.iter().any(|s| s.rows(t) != first.rows(t)) || last.rows(t) > 0)
        .collect();
    print!("\n{:<12}", "rows");
    for t in &changed {
        print!(" {:>width$}", t, width = t.len().max(6));
    }
    println!();
    for s in samples {
        print!("{:<12}", s.label);
        for t in &changed {
            print!(" {:>width$}", s.rows(t), width = t.len().max(6));
        }
        println!();
    }
}
