-- Outgoing notifications: per app and cluster (null: any), a URL that gets
-- deploy events as signed JSON or a Slack message. The signing secret and
-- the URL (a Slack webhook's path is a credential) are sealed with the
-- secrets key; `url` holds only its scheme and host, for people. Deliveries are rows a background task sends
-- and retries, so a slow or dead receiver never holds up a deploy. Keep
-- migrations/sqlite and migrations/postgres in step.

CREATE TABLE notifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app TEXT,
    cluster TEXT,
    url TEXT NOT NULL,
    format TEXT NOT NULL,
    events TEXT NOT NULL,
    sealed_url TEXT NOT NULL,
    sealed_secret TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE notification_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id BIGINT NOT NULL,
    deploy_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);

CREATE INDEX notification_deliveries_due ON notification_deliveries (status, next_at);
CREATE INDEX notification_deliveries_of ON notification_deliveries (notification_id, id);
