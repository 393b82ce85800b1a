-- Rollout strategies: each host of a deploy belongs to a batch, started in
-- order; a failure threshold halts the rollout; one deploy at a time per
-- app and cluster. Keep migrations/sqlite and migrations/postgres in step.

ALTER TABLE deploys ADD COLUMN strategy TEXT NOT NULL DEFAULT '{"kind":"all-at-once"}';
ALTER TABLE deploys ADD COLUMN max_failures TEXT NOT NULL DEFAULT '0';
ALTER TABLE deploys ADD COLUMN current_batch BIGINT NOT NULL DEFAULT 0;
-- Set while a finished batch bakes: when the next one starts.
ALTER TABLE deploys ADD COLUMN next_batch_at BIGINT;
ALTER TABLE deploy_hosts ADD COLUMN batch BIGINT NOT NULL DEFAULT 0;
-- A retry of the failed hosts of an earlier deploy names it.
ALTER TABLE deploys ADD COLUMN retry_of BIGINT;

-- Older installations could run two deploys of an app on a cluster at once:
-- keep the newest of each pair active.
UPDATE deploys SET status = 'cancelled', error = 'cancelled on upgrade: another deploy of the app to the cluster was newer'
WHERE status IN ('building', 'running')
  AND id NOT IN (SELECT MAX(id) FROM deploys WHERE status IN ('building', 'running') GROUP BY app, cluster);

CREATE UNIQUE INDEX one_active_deploy ON deploys (app, cluster) WHERE status IN ('building', 'running');
