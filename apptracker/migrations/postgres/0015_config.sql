-- App config (`deploy env`): every change makes a new, immutable version of
-- the app's whole config, so a host asked to run version N gets exactly N
-- and a rollback can go back to N-1. `entries` is JSON: a list of
-- {"key", "cluster" (null: app-wide), "value"} for plain values and
-- {"key", "cluster", "sealed"} for secrets, sealed with the secrets key
-- file (never in the database). `keys` lists the keys the change touched,
-- for the history. Deploys say what they do (install, restart, stop, start)
-- and with which config version; the desired state reads both through its
-- deploy. `desired.prior_deploy_id` is the deploy a host's row named
-- before the current one, so a failed restart of the same release goes back
-- to it (and its config), not to an older release. Keep migrations/sqlite
-- and migrations/postgres in step. `apps.new_hosts` says whether a host that
-- joins a cluster gets the app there at once (`auto`) or waits (`manual`).

CREATE TABLE config_versions (
    app TEXT NOT NULL,
    version BIGINT NOT NULL,
    entries TEXT NOT NULL,
    keys TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app, version)
);

ALTER TABLE deploys ADD COLUMN action TEXT NOT NULL DEFAULT 'deploy';
ALTER TABLE deploys ADD COLUMN config_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE desired ADD COLUMN prior_deploy_id BIGINT;
ALTER TABLE apps ADD COLUMN new_hosts TEXT NOT NULL DEFAULT 'auto';
