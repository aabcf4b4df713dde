-- The window clock and the fleet view find threads whose latest customer message falls
-- in a span. They read an index of threads on last_customer_at, which every customer
-- message had to rewrite (an entry removed and one added, both at random places; on
-- PostgreSQL it also kept a thread's update from staying on its page). An index of the
-- customer messages themselves, by time, only grows at its end; a thread is then one
-- whose last_customer_at equals such a message's instant.
DROP INDEX threads_by_window_close;
CREATE INDEX messages_customer_by_time ON messages (phone_number_id, timestamp, thread_id)
    WHERE direction = 'inbound' AND counts_for_window AND NOT is_reaction;

-- Room on each page for a thread's next version: no index holds the summary columns a
-- message moves (last_customer_at, last_reaction_at, profile_name), so PostgreSQL can
-- keep the new version on the same page and add no index entries (a HOT update).
ALTER TABLE threads SET (fillfactor = 50);

-- Fails the statement that calls it. An ingest batch is one statement, often its own
-- transaction; when it finds that a thread the process remembered is gone (another
-- process merged it away), it must store nothing and run again (SQLSTATE HG001).
CREATE FUNCTION hourglass_abort_stale_thread() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a thread this process remembered no longer exists'
        USING ERRCODE = 'HG001';
END
$$;
