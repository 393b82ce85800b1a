-- What each host's versionchecker last reported: one row per host (when,
-- how often it reports, its free disk) and one per app on it (what
-- `current` names, the process, disk use; the whole report as JSON).
-- Only the latest report is kept. Keep migrations/sqlite and
-- migrations/postgres in step.

CREATE TABLE host_reports (
    cluster TEXT NOT NULL,
    host TEXT NOT NULL,
    -- When the layout was read, by AppTracker's clock (unix ms).
    observed_at BIGINT NOT NULL,
    interval_ms BIGINT NOT NULL,
    agent TEXT NOT NULL,
    disk_free_bytes BIGINT,
    disk_total_bytes BIGINT,
    PRIMARY KEY (cluster, host)
);

CREATE TABLE app_reports (
    cluster TEXT NOT NULL,
    host TEXT NOT NULL,
    app TEXT NOT NULL,
    current_version TEXT,
    -- The app's deploy::report::AppReport.
    report_json TEXT NOT NULL,
    PRIMARY KEY (cluster, host, app)
);
