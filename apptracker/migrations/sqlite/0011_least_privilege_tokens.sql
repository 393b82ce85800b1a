-- Least-privilege tokens (issue 15). Keep migrations/sqlite and
-- migrations/postgres in step.

-- An agent token may be bound to one host of its cluster: it then reports
-- only for that host. NULL: a cluster-wide agent token (or a person's, or
-- a builder's).
ALTER TABLE tokens ADD COLUMN host TEXT;

-- Who holds a running build's lease: `token:<tokens.id>` for a worker
-- authenticated by a token, `builtin:<name>` for an in-process builder
-- (which no HTTP caller can be). `worker` stays the holder's display name.
ALTER TABLE builds ADD COLUMN holder TEXT;
-- How often the build went back to the queue because its lease ran out;
-- past `max_build_requeues` the build fails instead.
ALTER TABLE builds ADD COLUMN requeues BIGINT NOT NULL DEFAULT 0;
-- The sha256 and size AppTracker measured while receiving the artifact
-- (cleared by every claim, like the signature); a result must agree.
ALTER TABLE builds ADD COLUMN upload_sha256 TEXT;
ALTER TABLE builds ADD COLUMN upload_size BIGINT;
-- An admin marked the build bad: never reused, never deployed again.
ALTER TABLE builds ADD COLUMN bad_at BIGINT;
ALTER TABLE builds ADD COLUMN bad_by TEXT;
ALTER TABLE builds ADD COLUMN bad_reason TEXT;
