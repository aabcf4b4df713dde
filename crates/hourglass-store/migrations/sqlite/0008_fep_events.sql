-- Free entry point events (opened, closed) come from evaluating the threads an FEP may
-- concern: those with a recent ad message or FEP status, found by this index.
CREATE INDEX threads_by_last_fep_signal_at ON threads (last_fep_signal_at) WHERE last_fep_signal_at IS NOT NULL;

-- What the FEP clock last found for each such thread, and the last free entry point it
-- reported: an event is sent only when a new evaluation differs from this, so a late
-- status that moves an FEP into the past still gets its events, once.
CREATE TABLE fep_notices (
    thread_id   INTEGER PRIMARY KEY REFERENCES threads(id),
    -- The phase at the last evaluation (eligible and pending are looked at again on every
    -- tick: a delivery opens them).
    phase       TEXT NOT NULL,
    -- threads.last_fep_signal_at when evaluated: a newer signal means evaluate again.
    signal_at   INTEGER,
    -- The last free entry point reported (opened), and whether its close was reported.
    opened_at   INTEGER,
    closes_at   INTEGER,
    closed      INTEGER NOT NULL DEFAULT 0
);
-- Reported free entry points whose close is not reported yet, by when they close.
CREATE INDEX fep_notices_open_by_close ON fep_notices (closes_at) WHERE opened_at IS NOT NULL AND NOT closed;

-- The window clock finds closings number by number through threads_by_window_close
-- (phone_number_id, last_customer_at, id): this index, which every customer message had
-- to update as well, is not needed.
DROP INDEX threads_by_last_customer_at;
