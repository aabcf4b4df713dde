-- Raw deliveries arrive in time order, so a BRIN index (the range of received_at per
-- block range) finds a span for a replay as well as a B-tree, at a fraction of the
-- cost: a B-tree adds an entry (and a WAL record) for every webhook stored. Replays read
-- on in `seq` order through webhook_deliveries_by_seq.
DROP INDEX webhook_deliveries_received_at;
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries USING brin (received_at)
    WITH (autosummarize = on);
