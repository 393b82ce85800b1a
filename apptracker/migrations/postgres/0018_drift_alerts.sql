-- Drift found: one row per app on a host that is out of sync (drifted, not
-- running or missing) and was announced to the notifications that want
-- `drift_found`. The replica whose insert makes the row claims the alert and
-- queues its deliveries in the same transaction, so replicas never send one
-- twice. The row goes once the app runs in sync there again (or no longer
-- has a row in the drift table), so a later drift is announced again.
-- `state` and `since` are what was announced, and when. Keep
-- migrations/sqlite and migrations/postgres in step.

CREATE TABLE drift_alerts (
    cluster TEXT NOT NULL,
    host TEXT NOT NULL,
    app TEXT NOT NULL,
    state TEXT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (cluster, host, app)
);
