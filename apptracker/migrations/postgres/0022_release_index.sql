-- A release's file index (`deploy::index`, issue 21), uploaded by the
-- worker before its artifact (`PUT /api/v1/builds/{id}/index`) and stored
-- beside it (`<artifact key>.index.json`): its sha256 and size as
-- measured, and the packer's signature over them. A claim clears them, as
-- it clears the artifact's upload columns; they are cleared too when the
-- artifact's files could not all be stored as blobs, so a build presents
-- an index only when every file it names can be fetched. Keep
-- migrations/sqlite and migrations/postgres in step.

ALTER TABLE builds ADD COLUMN index_sha256 TEXT;
ALTER TABLE builds ADD COLUMN index_size BIGINT;
ALTER TABLE builds ADD COLUMN index_signature TEXT;
