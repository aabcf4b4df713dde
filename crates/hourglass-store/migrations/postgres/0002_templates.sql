-- The template registry of each WhatsApp Business Account (WABA): what Meta last told us,
-- through a sync, a creation or a template webhook. A template is one name in one
-- language (Meta gives each language its own id).
CREATE TABLE templates (
    waba_id           TEXT NOT NULL,
    name              TEXT NOT NULL,
    language          TEXT NOT NULL,
    meta_template_id  TEXT,
    -- MARKETING, UTILITY, AUTHENTICATION; NULL until Meta says.
    category          TEXT,
    -- Meta's status (APPROVED, PENDING, REJECTED, PAUSED, DISABLED, ...); NULL when a
    -- webhook named the template before any status was known.
    status            TEXT,
    status_reason     TEXT,
    -- GREEN, YELLOW, RED, UNKNOWN.
    quality           TEXT,
    -- Meta's template JSON (components, parameter_format, ...) as last received; NULL for
    -- a template known only from webhooks.
    definition        TEXT,
    -- The instant each of status, category and quality was last set: a late webhook
    -- older than a sync does not undo it.
    status_at         BIGINT,
    category_at       BIGINT,
    quality_at        BIGINT,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (waba_id, name, language)
);
CREATE INDEX templates_by_meta_id ON templates (waba_id, meta_template_id);

-- Every change of a template's status, category or quality, whoever told us: Meta's
-- webhooks, a sync that found a difference, a creation or a deletion through Hourglass.
-- A redelivered webhook changes nothing (the UNIQUE key).
CREATE TABLE template_events (
    id                BIGSERIAL PRIMARY KEY,
    waba_id           TEXT NOT NULL,
    meta_template_id  TEXT NOT NULL DEFAULT '',
    name              TEXT NOT NULL DEFAULT '',
    language          TEXT NOT NULL DEFAULT '',
    kind              TEXT NOT NULL CHECK (kind IN ('status', 'category', 'quality')),
    value             TEXT NOT NULL,
    previous          TEXT,
    reason            TEXT,
    at                BIGINT NOT NULL,
    source            TEXT NOT NULL,
    UNIQUE (waba_id, meta_template_id, name, language, kind, value, at, source)
);
CREATE INDEX template_events_by_template ON template_events (waba_id, name, language, at);

-- The last complete sync of a WABA's templates: only then is a template missing from the
-- registry known not to exist.
CREATE TABLE template_syncs (
    waba_id    TEXT PRIMARY KEY,
    synced_at  BIGINT NOT NULL,
    templates  BIGINT NOT NULL
);
