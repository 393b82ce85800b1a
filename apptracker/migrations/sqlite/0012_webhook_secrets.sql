-- Per-app webhook secrets, one per provider, and the delivery ids seen
-- lately. Keep migrations/postgres/ in step.

-- An app's secret for one provider (github, gitlab, gitea), sealed with
-- AppTracker's secrets key (ChaCha20-Poly1305, see secrets.rs): never in
-- the clear at rest, never in API output. During a rotation the previous
-- secret is still accepted until previous_until (unix ms).
CREATE TABLE webhook_secrets (
    app TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous TEXT,
    previous_until BIGINT,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    PRIMARY KEY (app, provider)
);

-- Push deliveries already handled (X-GitHub-Delivery, X-Gitea-Delivery /
-- X-Forgejo-Delivery, X-Gitlab-Event-UUID), per app: a redelivery or a
-- replay does nothing. Rows older than the retention window are pruned.
CREATE TABLE webhook_deliveries (
    app TEXT NOT NULL,
    provider TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (app, provider, delivery_id)
);
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at);
