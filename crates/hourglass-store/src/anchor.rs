//! A thread's window anchor in SQL: the instant its customer service window runs from,
//! which is its latest customer message, or, where reactions count
//! (`reactions_open_window`), the later of that and its latest reaction
//! ([`crate::ThreadRow::window_anchor`] in Rust). The fleet view and the window clock
//! find threads by it.

use hourglass_core::{Instant, RuleSettings};

use crate::ThreadCursor;

/// The anchor of the thread aliased `t`, as an expression SQLite and PostgreSQL both read
/// (NULL for a thread the contact never wrote to).
pub(crate) fn anchor_sql(t: &str, settings: RuleSettings) -> String {
    if settings.reactions_open_window {
        format!(
            "CASE WHEN {t}.last_customer_at IS NULL OR {t}.last_reaction_at > {t}.last_customer_at \
             THEN {t}.last_reaction_at ELSE {t}.last_customer_at END"
        )
    } else {
        format!("{t}.last_customer_at")
    }
}

/// `SELECT m.thread_id FROM {source} WHERE {condition}`, over the contact's messages that
/// can anchor a window: customer messages, and reactions where they count. Each kind is
/// its own branch so that each reads its own partial index (`messages_customer_by_time`,
/// `messages_reaction_by_time`); `{condition}` bounds `m.phone_number_id` and
/// `m.timestamp`, which those indexes lead with.
pub(crate) fn anchoring_messages_sql(
    source: &str,
    condition: &str,
    settings: RuleSettings,
) -> String {
    let branch = |kind: &str| {
        format!(
            "SELECT m.thread_id FROM {source} WHERE {condition} \
             AND m.direction = 'inbound' AND m.counts_for_window AND {kind}"
        )
    };
    if settings.reactions_open_window {
        format!(
            "{} UNION ALL {}",
            branch("NOT m.is_reaction"),
            branch("m.is_reaction")
        )
    } else {
        branch("NOT m.is_reaction")
    }
}

/// The fleet view's query: `columns` of the threads of number `p(1)` whose anchor is in
/// `(p(2), p(3)]` and after the cursor `(p(4), p(5))` (anchor, id), in that order, at most
/// `p(6)`. `p` writes parameter `n` in the database's style (`?n` or `$n`).
pub(crate) fn threads_by_anchor_sql(
    columns: &str,
    p: fn(u8) -> String,
    settings: RuleSettings,
) -> String {
    let anchor = anchor_sql("t", settings);
    let (number, from, to, cursor_at, cursor_id, limit) = (p(1), p(2), p(3), p(4), p(5), p(6));
    // A message before the cursor's anchor cannot be the anchor of a thread after it.
    let messages = anchoring_messages_sql(
        "messages m",
        &format!(
            "m.phone_number_id = {number} AND m.timestamp > {from} AND m.timestamp <= {to} \
             AND m.timestamp >= {cursor_at}"
        ),
        settings,
    );
    format!(
        "SELECT {columns} FROM threads t
          WHERE t.id IN ({messages})
            AND t.phone_number_id = {number} AND {anchor} > {from} AND {anchor} <= {to}
            AND ({anchor}, t.id) > ({cursor_at}, {cursor_id})
          ORDER BY {anchor}, t.id LIMIT {limit}"
    )
}

/// The values of [`threads_by_anchor_sql`]'s parameters 2 to 6, in its order: `from`,
/// `to`, the cursor's anchor and id (the least values without a cursor), `limit`.
/// Parameter 1, the number, is bound before them.
pub(crate) fn threads_by_anchor_args(
    from: Instant,
    to: Instant,
    cursor: Option<ThreadCursor>,
    limit: u32,
) -> [i64; 5] {
    let (cursor_at, cursor_id) = cursor
        .map(|c| (c.anchor_at.unix_seconds(), c.id))
        .unwrap_or((i64::MIN, i64::MIN));
    [
        from.unix_seconds(),
        to.unix_seconds(),
        cursor_at,
        cursor_id,
        i64::from(limit),
    ]
}
