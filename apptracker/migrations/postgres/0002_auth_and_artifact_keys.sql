-- API tokens, stored as the sha256 of the token: the plaintext is shown once
-- when the token is made and never stored. Keep migrations/sqlite/ in step.
CREATE TABLE tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    -- Agent tokens act for one cluster; NULL for people's tokens.
    cluster TEXT,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);

-- Builds keep the artifact's key in the store; download URLs (signed, short
-- lived) are minted from it when handed out.
ALTER TABLE builds RENAME COLUMN artifact_url TO artifact_key;

-- A packer worker holds a build for a lease it renews; an expired lease puts
-- the build back in the queue.
ALTER TABLE builds ADD COLUMN worker TEXT;
ALTER TABLE builds ADD COLUMN lease_until BIGINT;
