-- The window clock and the fleet view find threads whose latest customer message falls
-- in a span. They read an index of threads on last_customer_at, which every customer
-- message had to rewrite (an entry removed and one added, both at random places; on
-- PostgreSQL it also kept a thread's update from staying on its page). An index of the
-- customer messages themselves, by time, only grows at its end; a thread is then one
-- whose last_customer_at equals such a message's instant.
DROP INDEX threads_by_window_close;
CREATE INDEX messages_customer_by_time ON messages (phone_number_id, timestamp, thread_id)
    WHERE direction = 'inbound' AND counts_for_window AND NOT is_reaction;
