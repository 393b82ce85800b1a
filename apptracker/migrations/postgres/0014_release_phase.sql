-- The release phase: a build whose release has a `[release] command`
-- records how long it may run (NULL: none), and a deploy of it runs the
-- command once, on one host, before any host switches; `release_phases`
-- holds that run (one row per deploy that needed it). Keep
-- migrations/sqlite and migrations/postgres in step.

ALTER TABLE builds ADD COLUMN release_timeout_ms BIGINT;

CREATE TABLE release_phases (
    deploy_id BIGINT PRIMARY KEY REFERENCES deploys (id),
    host TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT,
    log TEXT NOT NULL DEFAULT '',
    started_at BIGINT NOT NULL,
    -- When a host that has not answered by then fails the deploy.
    deadline_at BIGINT NOT NULL,
    finished_at BIGINT
);

CREATE INDEX release_phases_running ON release_phases (status, deadline_at);
