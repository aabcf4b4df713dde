-- Raw webhook bodies, byte for byte: Meta offers no way to fetch a webhook again.
-- Keyed by the body's SHA-256, so Meta's retries of the same body store nothing new.
CREATE TABLE webhook_deliveries (
    sha256       TEXT PRIMARY KEY,
    received_at  INTEGER NOT NULL,
    body         BLOB NOT NULL
);

-- Items of a stored delivery that Hourglass did not understand: kept, never fatal.
CREATE TABLE unprocessed_items (
    id               INTEGER PRIMARY KEY,
    delivery_sha256  TEXT NOT NULL REFERENCES webhook_deliveries(sha256),
    field            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    raw              TEXT NOT NULL,
    UNIQUE (delivery_sha256, raw)
);

CREATE TABLE business_numbers (
    phone_number_id       TEXT PRIMARY KEY,
    waba_id               TEXT,
    display_phone_number  TEXT,
    time_zone             TEXT NOT NULL DEFAULT 'UTC'
);

-- One business number x one contact. A contact is found by wa_id or by the
-- business-scoped user_id; either may be absent.
CREATE TABLE threads (
    id                   INTEGER PRIMARY KEY,
    phone_number_id      TEXT NOT NULL,
    wa_id                TEXT,
    user_id              TEXT,
    profile_name         TEXT,
    -- Kept current on every write so that a window question about now never replays
    -- history: the latest customer message (reactions apart), the latest reaction, and
    -- the latest event that can bear on a free entry point.
    last_customer_at     INTEGER,
    last_reaction_at     INTEGER,
    last_fep_signal_at   INTEGER,
    CHECK (wa_id IS NOT NULL OR user_id IS NOT NULL)
);
CREATE UNIQUE INDEX threads_by_wa_id ON threads (phone_number_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE UNIQUE INDEX threads_by_user_id ON threads (phone_number_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX threads_by_window_close ON threads (phone_number_id, last_customer_at, id);

CREATE TABLE messages (
    wamid               TEXT PRIMARY KEY,
    thread_id           INTEGER NOT NULL REFERENCES threads(id),
    phone_number_id     TEXT NOT NULL,
    direction           TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    type                TEXT NOT NULL,
    -- Inbound: Meta's timestamp. Outbound: when it was sent (ours or Meta's `sent`, earlier wins).
    timestamp           INTEGER NOT NULL,
    entry_point         TEXT,
    is_reaction         INTEGER NOT NULL DEFAULT 0,
    counts_for_window   INTEGER NOT NULL DEFAULT 0,
    -- Outbound only.
    category            TEXT,
    template_name       TEXT,
    template_language   TEXT,
    sent_via_hourglass  INTEGER NOT NULL DEFAULT 0,
    delivered_at        INTEGER,
    body                TEXT
);
CREATE INDEX messages_by_thread_time ON messages (thread_id, timestamp);
-- Only business messages are counted against the monthly free allowance.
CREATE INDEX messages_by_service_delivery ON messages (phone_number_id, category, delivered_at)
    WHERE direction = 'outbound';

CREATE TABLE statuses (
    wamid            TEXT NOT NULL,
    status           TEXT NOT NULL,
    timestamp        INTEGER NOT NULL,
    category         TEXT,
    fep_expires_at   INTEGER,
    pricing          TEXT,
    conversation     TEXT,
    errors           TEXT,
    PRIMARY KEY (wamid, status)
);

-- Sends Hourglass refused before they reached Meta.
CREATE TABLE refusals (
    id               INTEGER PRIMARY KEY,
    phone_number_id  TEXT NOT NULL,
    thread_id        INTEGER,
    recipient        TEXT,
    at               INTEGER NOT NULL,
    code             INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    request          TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    label       TEXT NOT NULL,
    -- NULL for an admin key; else a JSON array of the phone_number_ids it may use.
    numbers     TEXT,
    created_at  INTEGER NOT NULL
);
