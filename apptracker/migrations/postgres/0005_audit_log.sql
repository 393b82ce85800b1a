-- Who changed what through the API, when, from where, and how it ended: one
-- row per state-changing request (audit.rs says which are left out). Rows
-- are only ever inserted. Keep migrations/sqlite/ in step.
CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    -- The token's name (never the token), `webhook:<provider>`,
    -- `build-trigger` or `anonymous`.
    actor TEXT NOT NULL,
    -- The token's role, `webhook` or `trigger`; NULL when anonymous.
    role TEXT,
    method TEXT NOT NULL,
    -- The matched route (`/api/v1/deploys/{id}`); NULL when none matched.
    route TEXT,
    -- The request path without its query; for routes carrying a secret,
    -- the route itself.
    path TEXT NOT NULL,
    -- The app the request concerned, when there is one.
    app TEXT,
    -- What it acted on, for people (`deploy 7 of hello to local`).
    target TEXT,
    -- The peer address of the connection (a proxy's, behind one).
    peer TEXT,
    status BIGINT NOT NULL,
    -- The `code` of the JSON error body, when the request failed with one.
    error_code TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
CREATE INDEX audit_log_by_app ON audit_log (app, id);
