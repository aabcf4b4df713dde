-- Media customers send (voice notes, images, documents): Meta gives an id whose download
-- URL expires in minutes and the id itself in days, so each is fetched as soon as its
-- message is stored (the row is written in the same transaction) and kept on disk.
CREATE TABLE media (
    media_id         TEXT PRIMARY KEY,
    phone_number_id  TEXT NOT NULL,
    wamid            TEXT,
    mime_type        TEXT,
    -- Meta's checksum of the file, as the webhook gave it (base64 of the SHA-256).
    sha256           TEXT,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'stored', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    -- Where the bytes are, relative to the media directory.
    path             TEXT,
    size             INTEGER,
    error            TEXT,
    created_at       INTEGER NOT NULL
);
CREATE INDEX media_due ON media (next_attempt_at) WHERE state = 'pending';
