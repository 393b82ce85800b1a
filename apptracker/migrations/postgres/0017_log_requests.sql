-- Logs from anywhere: a request for a piece of an app's log on one host,
-- answered by that host's grabber (possibly through another replica), and
-- read by the request that waits for it. Keep migrations/sqlite and
-- migrations/postgres in step.

CREATE TABLE log_requests (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster TEXT NOT NULL,
    host TEXT NOT NULL,
    app TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    answer TEXT
);
