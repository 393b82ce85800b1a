-- Webhook builds: the branch a push must be on, an optional auto-deploy
-- rule, and the hash of the app's build-trigger secret. Keep
-- migrations/postgres/ in step.
ALTER TABLE apps ADD COLUMN branch TEXT NOT NULL DEFAULT 'main';
ALTER TABLE apps ADD COLUMN auto_deploy_cluster TEXT;
ALTER TABLE apps ADD COLUMN auto_deploy_hosts TEXT;
ALTER TABLE apps ADD COLUMN trigger_hash TEXT;
