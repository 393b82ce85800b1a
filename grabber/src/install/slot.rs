//! Per-app state of the engine: the lock that serialises installs of one app,
//! its supervised process, what the supervisor knows of its crashes, and the
//! newest request (older waiting ones are superseded).

use std::sync::Mutex;
use std::time::Duration;

use deploy::{AppRunStatus, DeployId, Version};

use super::Release;
use super::processes::ProcessCopy;
use crate::RestartPolicy;
use crate::process::AppProcess;

/// Per-app state: installs (and restarts) of one app are serialised by
/// `install`.
#[derive(Default)]
pub(super) struct AppSlot {
    pub(super) install: tokio::sync::Mutex<()>,
    pub(super) process: Mutex<Option<AppProcess>>,
    pub(super) health: Mutex<Supervision>,
    /// The copies of its other process types (`[processes]`), each
    /// supervised like `process`.
    pub(super) copies: Mutex<Vec<ProcessCopy>>,
    /// The newest install request for the app: `(ticket, deploy, version)`.
    /// A request that waited for `install` while a newer one came is
    /// dropped, so a queue of deploys ends at the newest, not the oldest.
    pub(super) newest: Mutex<(u64, Option<(DeployId, Version)>)>,
}

/// What the supervisor knows of one app's crashes.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Supervision {
    pub(super) status: AppRunStatus,
    /// Restarts since the release was started by an install.
    pub(super) restarts: u32,
    /// Crashes since the app last ran `stable_after`.
    pub(super) crashes: u32,
}

impl Supervision {
    /// Counts a crash of a process that ran for `uptime`; returns how long
    /// to wait before starting it again.
    pub(super) fn crashed(&mut self, uptime: Duration, policy: &RestartPolicy) -> Duration {
        if uptime >= policy.stable_after {
            self.crashes = 0;
        }
        self.crashes += 1;
        self.status = if self.crashes >= policy.failing_after {
            AppRunStatus::Failing
        } else {
            AppRunStatus::Restarting
        };
        let doublings = self.crashes.saturating_sub(1).min(20);
        policy
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(policy.max_backoff)
    }
}

impl AppSlot {
    pub(super) fn supervision(&self) -> Supervision {
        self.health.lock().map(|h| *h).unwrap_or_default()
    }

    pub(super) fn supervise(&self, f: impl FnOnce(&mut Supervision)) {
        match self.health.lock() {
            Ok(mut h) => f(&mut h),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Registers a request; returns its ticket.
    pub(super) fn enqueue(&self, req: &Release) -> u64 {
        let mut n = match self.newest.lock() {
            Ok(n) => n,
            Err(poisoned) => poisoned.into_inner(),
        };
        n.0 += 1;
        n.1 = Some((req.deploy_id, req.version.clone()));
        n.0
    }

    /// The newer request that came after `ticket`, if any.
    pub(super) fn newer_than(&self, ticket: u64) -> Option<(DeployId, Version)> {
        let n = self.newest.lock().ok()?;
        (n.0 != ticket).then(|| n.1.clone()).flatten()
    }

    pub(super) fn is_current(&self, p: &AppProcess) -> bool {
        self.process().is_some_and(|q| q.pid == p.pid)
    }

    pub(super) fn process(&self) -> Option<AppProcess> {
        self.process.lock().map(|p| p.clone()).unwrap_or(None)
    }

    pub(super) fn set_process(&self, p: Option<AppProcess>) -> Option<AppProcess> {
        match self.process.lock() {
            Ok(mut guard) => std::mem::replace(&mut *guard, p),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), p),
        }
    }
}
