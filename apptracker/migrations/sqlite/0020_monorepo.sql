-- Apps in a monorepo. `apps.root`: the subdirectory of the repository an
-- app is built from (NULL: the whole repository). `builds.watch`: the
-- `[build] watch` patterns of the built `slipway.toml`, as a JSON array of
-- strings (`[]` when it declares none; NULL for builds that did not
-- succeed, builds recorded before this migration, and results from older
-- workers, which a push treats as unknown and builds). Keep
-- migrations/sqlite and migrations/postgres in step.

ALTER TABLE apps ADD COLUMN root TEXT;
ALTER TABLE builds ADD COLUMN watch TEXT;
