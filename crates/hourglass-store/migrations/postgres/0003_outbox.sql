-- The durable outbox: every message sent through Hourglass's own send API is a row first,
-- written before anything is sent, claimed atomically by a worker, sent, and finished with
-- Meta's answer. Attempts and the next attempt's instant live here, not in memory, so a
-- restart loses no message and no retry.
CREATE TABLE outbox (
    id                 BIGSERIAL PRIMARY KEY,
    phone_number_id    TEXT NOT NULL,
    -- The contact as the request named it (a wa_id or a user_id).
    contact            TEXT NOT NULL,
    -- The client's Idempotency-Key, if any: the same key on the same number is the same
    -- message, and gets the same answer.
    idempotency_key    TEXT,
    -- SHA-256 of the client's request: the same key with another request is an error.
    request_sha256     TEXT NOT NULL,
    -- Meta's request body, as it will be sent.
    body               TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'refused')),
    attempts           BIGINT NOT NULL DEFAULT 0,
    -- Not before this instant (a scheduled send's send_at, or the next retry).
    next_attempt_at    BIGINT NOT NULL,
    -- While 'sending', the claim expires at this instant (a worker that died lets go).
    lease_until        BIGINT,
    created_at         BIGINT NOT NULL,
    send_at            BIGINT NOT NULL,
    finished_at        BIGINT,
    -- Meta's message id once Meta accepted it.
    wamid              TEXT,
    -- The last error: Meta's code (or Hourglass's refusal code) and what it said.
    error_code         BIGINT,
    error_message      TEXT,
    UNIQUE (phone_number_id, idempotency_key)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state IN ('queued', 'sending');
