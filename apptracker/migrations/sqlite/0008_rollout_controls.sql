-- Rollout controls: roll back the hosts that switched when a rollout
-- fails; a canary that waits for a human to continue; deploys queued behind
-- the active one; protected and frozen clusters. Keep migrations/sqlite and
-- migrations/postgres in step.

ALTER TABLE deploys ADD COLUMN rollback_on_failure BIGINT NOT NULL DEFAULT 0;
-- The deploy this one undoes (a rollback-on-failure names the deploy that
-- failed).
ALTER TABLE deploys ADD COLUMN rollback_of BIGINT;
-- Set while a finished batch waits for `POST /deploys/{id}/continue`.
ALTER TABLE deploys ADD COLUMN paused_at BIGINT;
-- The highest batch a human let start (manual canaries).
ALTER TABLE deploys ADD COLUMN continued_batch BIGINT NOT NULL DEFAULT 0;
-- Who asked, for a queued deploy started later by the server.
ALTER TABLE deploys ADD COLUMN requested_by TEXT;

CREATE INDEX deploys_queued ON deploys (app, cluster, id) WHERE status = 'queued';

-- Per-cluster controls: a protected cluster needs its name typed back to
-- deploy; a frozen one takes no deploys until `frozen_until`.
CREATE TABLE clusters (
    name TEXT PRIMARY KEY,
    protected BIGINT NOT NULL DEFAULT 0,
    frozen_until BIGINT,
    freeze_reason TEXT,
    frozen_by TEXT,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
