-- Where Hourglass forwards what Meta sends: the business's apps, each with its own secret
-- to sign with, the kinds of item it wants, and optionally only some numbers.
CREATE TABLE webhook_subscriptions (
    id                BIGSERIAL PRIMARY KEY,
    url               TEXT NOT NULL,
    secret            TEXT NOT NULL,
    -- Comma-separated kinds (messages, statuses, calls), or '*' for all.
    events            TEXT NOT NULL,
    -- Comma-separated phone_number_ids, or NULL for every number.
    phone_number_ids  TEXT,
    active            BIGINT NOT NULL DEFAULT 1,
    created_at        BIGINT NOT NULL
);

-- One item to forward to one subscription: written in the transaction that stored the
-- item, delivered at least once, in order per thread, retried for up to 7 days, then
-- kept as a dead letter until replayed.
CREATE TABLE webhook_forwards (
    id               BIGSERIAL PRIMARY KEY,
    subscription_id  BIGINT NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    -- phone_number_id and contact: items of one thread are delivered in order.
    thread_key       TEXT NOT NULL,
    kind             TEXT NOT NULL,
    -- The exact bytes to POST (and to sign).
    body             BYTEA NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT,
    last_error       TEXT
);
CREATE INDEX webhook_forwards_due ON webhook_forwards (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_forwards_by_thread ON webhook_forwards (subscription_id, thread_key, id) WHERE state = 'pending';
CREATE INDEX webhook_forwards_dead ON webhook_forwards (subscription_id, id) WHERE state = 'dead';
