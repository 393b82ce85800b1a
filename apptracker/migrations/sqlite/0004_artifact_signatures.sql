-- The packer's ed25519 signature over app, version and sha256, recorded
-- with the upload (or the in-process build) and handed to grabbers with the
-- artifact. Builds from before signing have none: grabbers refuse them, so
-- they must be rebuilt. Keep migrations/postgres/ in step.
ALTER TABLE builds ADD COLUMN signature TEXT;
