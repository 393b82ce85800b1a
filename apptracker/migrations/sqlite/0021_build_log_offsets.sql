-- Following a build's log (`GET /api/v1/builds/{id}/log?from=N`): offsets
-- count bytes since the build's log began, and `log_base` is the offset at
-- which the stored `log` starts. A log that starts over (a new claim clears
-- it; a result whose log does not continue the streamed one replaces it)
-- moves the base past the old log, so an offset handed out before never
-- names a byte of the new one. Keep migrations/sqlite and
-- migrations/postgres in step.

ALTER TABLE builds ADD COLUMN log_base BIGINT NOT NULL DEFAULT 0;
