-- Where reactions count as customer messages (`reactions_open_window`), a thread's window
-- may run from its latest reaction: the fleet view and the window clock then also find
-- threads by their reactions in a span, as messages_customer_by_time finds them by their
-- customer messages.
CREATE INDEX messages_reaction_by_time ON messages (phone_number_id, timestamp, thread_id)
    WHERE direction = 'inbound' AND counts_for_window AND is_reaction;
