-- Slipway's first schema. Times are unix milliseconds (BIGINT) and booleans
-- are 0/1 integers, so the same queries decode through sqlx's Any driver on
-- SQLite and PostgreSQL. Keep migrations/postgres/ in step.

CREATE TABLE apps (
    name TEXT PRIMARY KEY NOT NULL,
    git_url TEXT NOT NULL,
    next_build_number BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL REFERENCES apps (name),
    number BIGINT NOT NULL,
    git_ref TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    build_type TEXT,
    artifact_url TEXT,
    sha256 TEXT,
    size BIGINT,
    error TEXT,
    log TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    UNIQUE (app, number),
    UNIQUE (app, version)
);
CREATE INDEX builds_by_commit ON builds (app, commit_sha);
CREATE INDEX builds_by_status ON builds (status, id);

CREATE TABLE deploys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL REFERENCES apps (name),
    version TEXT,
    git_ref TEXT,
    build_id BIGINT,
    cluster TEXT NOT NULL,
    hosts_selector TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deploys_by_status ON deploys (status);

-- One row per targeted host: its latest phase in that deploy.
CREATE TABLE deploy_hosts (
    deploy_id BIGINT NOT NULL REFERENCES deploys (id),
    host TEXT NOT NULL,
    phase TEXT NOT NULL,
    failed_phase TEXT,
    rolled_back BIGINT NOT NULL DEFAULT 0,
    message TEXT,
    log_tail TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (deploy_id, host)
);

-- Every event a host reported, in order: the history behind deploy_hosts.
CREATE TABLE host_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deploy_id BIGINT NOT NULL,
    host TEXT NOT NULL,
    phase TEXT NOT NULL,
    failed_phase TEXT,
    rolled_back BIGINT NOT NULL DEFAULT 0,
    message TEXT,
    log_tail TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX host_events_by_deploy ON host_events (deploy_id, id);

CREATE TABLE hosts (
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    root TEXT NOT NULL,
    apps_json TEXT NOT NULL DEFAULT '[]',
    registered_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (cluster, name)
);

-- What each host should run: only AppTracker writes it.
CREATE TABLE desired (
    cluster TEXT NOT NULL,
    host TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    deploy_id BIGINT NOT NULL,
    previous_version TEXT,
    previous_deploy_id BIGINT,
    PRIMARY KEY (cluster, host, app)
);
