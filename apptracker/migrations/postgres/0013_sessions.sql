-- Dashboard sessions: the browser holds an opaque, expiring session id,
-- never the API token it signed in with. Stored as the sha256 of the id;
-- `token_hash` names the token the session acts for, so revoking the token
-- ends its sessions. Keep migrations/sqlite and migrations/postgres in step.

CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX sessions_token ON sessions (token_hash);
CREATE INDEX sessions_expiry ON sessions (expires_at);
