-- Replaying forwards from the raw deliveries received since an instant finds the first
-- of them by time, then reads on in the order they arrived (SQLite's rowid).
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at);

-- Window events (closing soon, closed) are found by the instant the window closes,
-- across every number.
CREATE INDEX threads_by_last_customer_at ON threads (last_customer_at) WHERE last_customer_at IS NOT NULL;

-- How far the clock-driven events have been emitted: one row per kind of event, moved
-- forward with compare-and-set so that several processes emit each span once.
CREATE TABLE clock_cursors (
    name  TEXT PRIMARY KEY,
    at    INTEGER NOT NULL
);
