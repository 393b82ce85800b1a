-- A rollback pins the app on the cluster to the version it went back to,
-- so auto-deploys do not undo it, until someone unpins it.
CREATE TABLE pins (
    app TEXT NOT NULL,
    cluster TEXT NOT NULL,
    version TEXT NOT NULL,
    pinned_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    pinned_at BIGINT NOT NULL,
    PRIMARY KEY (app, cluster)
);
