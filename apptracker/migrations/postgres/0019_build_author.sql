-- A build's commit author (`Name <email>`) and the first line of its
-- message (at most 200 characters), as the worker that built it read them
-- with the result. NULL for builds that did not succeed, builds recorded
-- before this migration, and results from older workers. Keep
-- migrations/sqlite and migrations/postgres in step.

ALTER TABLE builds ADD COLUMN author TEXT;
ALTER TABLE builds ADD COLUMN message TEXT;
