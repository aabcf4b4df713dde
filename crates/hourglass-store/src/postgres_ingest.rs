//! Ingestion on PostgreSQL: a batch of webhook deliveries in a few round trips.
//!
//! What limits a PostgreSQL writer on a small machine is the server's CPU per statement
//! and the round trips, not the rows. So a batch is:
//!
//! 1. the contacts' threads: from the ingest writers' memory (`contact_threads`), and for
//!    the contacts it cannot answer, one search and at most one insert;
//! 2. **one statement** that stores the raw bodies, then (only for bodies not stored
//!    before) the customer messages and the statuses, the business messages those
//!    statuses reveal, the outbox rows those statuses confirm, the threads' summary
//!    columns, and the notification that tells every process's window cache;
//! 3. rarely, the items that need more: forwards to subscribed apps, media to download,
//!    template changes, items kept raw.
//!
//! Every statement has a fixed text (arrays in, `unnest` inside), so each connection
//! prepares it once and PostgreSQL plans it from its cache.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, Row};

use crate::batch::{contacts_by_number, match_thread, windows_opened, ThreadKeys};
use crate::contact_threads::{ContactThreads, Learned};
use crate::model::*;
use crate::window_cache::{Touched, CHANGES_CHANNEL};
use crate::StoreError;

/// What one batch did, beside its report: the threads it found in the database (to
/// remember once it commits), and the numbers now known complete.
#[derive(Default)]
pub(crate) struct BatchOutcome {
    pub report: IngestReport,
    pub learned: Vec<Learned>,
    /// Threads the batch merged away (number, thread): to forget once it commits.
    pub merged_away: Vec<(String, i64)>,
    pub numbers_known: Vec<String>,
}

/// The SQLSTATE of `hourglass_abort_stale_thread()` (migration 0009): a thread the
/// batch remembered is gone (another process merged it away). The statement stored
/// nothing; the batch runs again with an empty cache.
pub(crate) const STALE_THREAD_CODE: &str = "HG001";

/// Stores a batch; what it changed goes to `touched`. With `in_transaction` false it runs
/// only a batch that is the one statement alone (PostgreSQL commits it by itself) and
/// answers `None`, having written nothing, for one that needs the caller's transaction.
pub(crate) async fn ingest_batch(
    conn: &mut PgConnection,
    threads_cache: &std::sync::Mutex<ContactThreads>,
    numbers_known: &std::sync::Mutex<HashSet<String>>,
    deliveries: &[WebhookDelivery],
    touched: &mut Touched,
    in_transaction: bool,
) -> Result<Option<BatchOutcome>, StoreError> {
    let mut outcome = BatchOutcome::default();

    // Each body once, in key order, so that concurrent batches of several processes lock
    // rows in the same order.
    let mut seen = HashSet::new();
    let mut unique: Vec<&WebhookDelivery> = deliveries
        .iter()
        .filter(|d| seen.insert(d.body_sha256.as_str()))
        .collect();
    unique.sort_by(|a, b| a.body_sha256.cmp(&b.body_sha256));
    let items: Vec<(&str, &IngestItem)> = unique
        .iter()
        .flat_map(|d| d.items.iter().map(|i| (d.body_sha256.as_str(), i)))
        .collect();

    // 1. Business numbers this process has not seen complete.
    let mut numbers: Vec<&NumberRef> = Vec::new();
    {
        let known = numbers_known.lock().expect("numbers cache lock");
        for (_, item) in &items {
            if let IngestItem::Inbound { number, .. } | IngestItem::Status { number, .. } = item {
                if !known.contains(&number.phone_number_id)
                    && !numbers
                        .iter()
                        .any(|n| n.phone_number_id == number.phone_number_id)
                {
                    numbers.push(number);
                }
            }
        }
    }
    // 2. Threads: remembered, or found (and created) in the database.
    let just_items: Vec<&IngestItem> = items.iter().map(|(_, i)| *i).collect();
    let mut resolved: HashMap<(String, ContactKey), i64> = HashMap::new();
    let mut misses: Vec<(String, Vec<ContactKey>)> = Vec::new();
    {
        let cache = threads_cache.lock().expect("thread cache lock");
        for (number, keys) in contacts_by_number(&just_items) {
            let mut missed = Vec::new();
            for key in keys {
                match cache.thread_of(&number, &key) {
                    Some(id) => {
                        touched.threads.insert(id);
                        resolved.insert((number.clone(), key), id);
                    }
                    None => missed.push(key),
                }
            }
            if !missed.is_empty() {
                misses.push((number, missed));
            }
        }
    }
    // Most batches (known contacts, nothing to forward or download) are the one statement
    // alone, which PostgreSQL then commits by itself: no BEGIN, no COMMIT round trip.
    // Anything more runs in a transaction the caller opens.
    let needs_transaction = !numbers.is_empty()
        || !misses.is_empty()
        || just_items
            .iter()
            .any(|item| needs_more_than_the_statement(item));
    if needs_transaction && !in_transaction {
        return Ok(None);
    }
    for n in &numbers {
        // DO NOTHING takes no lock on a number that exists: an upsert would lock the
        // number's row until commit and make every concurrent batch wait.
        sqlx::query(
            "INSERT INTO business_numbers (phone_number_id, waba_id, display_phone_number)
             VALUES ($1, $2, $3) ON CONFLICT (phone_number_id) DO NOTHING",
        )
        .bind(&n.phone_number_id)
        .bind(&n.waba_id)
        .bind(&n.display_phone_number)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE business_numbers SET waba_id = COALESCE(waba_id, $2),
               display_phone_number = COALESCE(display_phone_number, $3)
             WHERE phone_number_id = $1 AND (waba_id IS NULL OR display_phone_number IS NULL)",
        )
        .bind(&n.phone_number_id)
        .bind(&n.waba_id)
        .bind(&n.display_phone_number)
        .execute(&mut *conn)
        .await?;
        outcome.numbers_known.push(n.phone_number_id.clone());
    }

    for (number, keys) in &misses {
        for (key, id) in resolve_threads(conn, number, keys, touched, &mut outcome).await? {
            resolved.insert((number.clone(), key), id);
        }
    }
    let thread_id = |number: &NumberRef, contact: &ContactKey| -> i64 {
        resolved[&(number.phone_number_id.clone(), contact.clone())]
    };

    // Messages that may open a window need the thread's latest customer message (and
    // reaction) before this batch, read and locked (in id order) before the summaries move.
    let may_open: std::collections::BTreeSet<i64> = just_items
        .iter()
        .filter_map(|item| match item {
            IngestItem::Inbound {
                number,
                contact,
                window_opened: Some(_),
                counts_for_window: true,
                ..
            } => Some(thread_id(number, contact)),
            _ => None,
        })
        .collect();
    let mut previous_summary: HashMap<i64, (Option<i64>, Option<i64>)> = HashMap::new();
    if !may_open.is_empty() {
        let ids: Vec<i64> = may_open.into_iter().collect();
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT id, last_customer_at, last_reaction_at FROM threads WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        previous_summary.extend(rows.into_iter().map(|(id, c, r)| (id, (c, r))));
    }

    // 3. The one statement.
    let mut d_sha = Vec::with_capacity(unique.len());
    let mut d_received = Vec::with_capacity(unique.len());
    let mut d_body: Vec<&[u8]> = Vec::with_capacity(unique.len());
    for d in &unique {
        d_sha.push(d.body_sha256.as_str());
        d_received.push(d.received_at.unix_seconds());
        d_body.push(d.body.as_slice());
    }
    let mut inbound: Vec<(&str, &IngestItem)> = items
        .iter()
        .copied()
        .filter(|(_, i)| matches!(i, IngestItem::Inbound { .. }))
        .collect();
    inbound.sort_by(|a, b| message_id(a.1).cmp(message_id(b.1)));
    let mut m = InboundColumns::default();
    for (sha, item) in &inbound {
        if let IngestItem::Inbound {
            number,
            contact,
            profile_name,
            message_id,
            timestamp,
            message_type,
            entry_point,
            is_reaction,
            counts_for_window,
            raw,
            ..
        } = item
        {
            m.sha.push(*sha);
            m.wamid.push(message_id.as_str());
            m.thread.push(thread_id(number, contact));
            m.number.push(number.phone_number_id.as_str());
            m.kind.push(message_type.as_str());
            m.at.push(timestamp.unix_seconds());
            m.entry_point.push(entry_point_name(*entry_point));
            m.is_reaction.push(*is_reaction);
            m.counts.push(*counts_for_window);
            m.body.push(raw.as_str());
            m.profile.push(profile_name.as_deref());
        }
    }
    let mut statuses: Vec<(&str, &IngestItem)> = items
        .iter()
        .copied()
        .filter(|(_, i)| matches!(i, IngestItem::Status { .. }))
        .collect();
    statuses.sort_by(|a, b| status_key(a.1).cmp(&status_key(b.1)));
    let mut s = StatusColumns::default();
    for (sha, item) in &statuses {
        if let IngestItem::Status {
            number,
            contact,
            message_id,
            status,
            timestamp,
            category,
            fep_expires_at,
            pricing,
            conversation,
            errors,
            outbox_id,
            ..
        } = item
        {
            s.sha.push(*sha);
            s.wamid.push(message_id.as_str());
            s.status.push(status_name(*status));
            s.at.push(timestamp.unix_seconds());
            s.category.push(category.map(|c| c.as_str()));
            s.fep_expires_at
                .push(fep_expires_at.map(|i| i.unix_seconds()));
            s.pricing.push(pricing.as_deref());
            s.conversation.push(conversation.as_deref());
            s.errors.push(errors.as_deref());
            s.thread.push(thread_id(number, contact));
            s.number.push(number.phone_number_id.as_str());
            s.outbox_id.push(*outbox_id);
            touched.numbers.insert(number.phone_number_id.clone());
        }
    }
    let notification = (!touched.is_empty()).then(|| touched.notification());
    let rows = sqlx::query(STORE_BATCH)
        .bind(&d_sha)
        .bind(&d_received)
        .bind(&d_body)
        .bind(&m.sha)
        .bind(&m.wamid)
        .bind(&m.thread)
        .bind(&m.number)
        .bind(&m.kind)
        .bind(&m.at)
        .bind(&m.entry_point)
        .bind(&m.is_reaction)
        .bind(&m.counts)
        .bind(&m.body)
        .bind(&m.profile)
        .bind(&s.sha)
        .bind(&s.wamid)
        .bind(&s.status)
        .bind(&s.at)
        .bind(&s.category)
        .bind(&s.fep_expires_at)
        .bind(&s.pricing)
        .bind(&s.conversation)
        .bind(&s.errors)
        .bind(&s.thread)
        .bind(&s.number)
        .bind(CHANGES_CHANNEL)
        .bind(notification)
        .bind(&s.outbox_id)
        .fetch_all(&mut *conn)
        .await?;
    // The statement names what was stored before (usually nothing: a retry of Meta's),
    // so that an ordinary batch reads back no rows.
    let mut old_deliveries: HashSet<String> = HashSet::new();
    let mut old_messages: HashSet<String> = HashSet::new();
    let mut old_statuses: HashSet<(String, String)> = HashSet::new();
    for row in rows {
        let kind: &str = row.try_get(0)?;
        let a: Option<String> = row.try_get(1)?;
        let b: Option<String> = row.try_get(2)?;
        match (kind, a, b) {
            ("d", Some(sha), _) => {
                old_deliveries.insert(sha);
            }
            ("m", Some(wamid), _) => {
                old_messages.insert(wamid);
            }
            ("s", Some(wamid), Some(status)) => {
                old_statuses.insert((wamid, status));
            }
            _ => {}
        }
    }
    let is_new_delivery = |d: &WebhookDelivery| !old_deliveries.contains(&d.body_sha256);

    // 4. What the new items need beyond that.
    let report = &mut outcome.report;
    let mut counted_messages: HashSet<&str> = HashSet::new();
    let mut counted_statuses: HashSet<(&str, &str)> = HashSet::new();
    let mut forwards: Vec<(&str, &crate::ForwardItem)> = Vec::new();
    let mut new_media: Vec<(&str, &str, &crate::MediaRef)> = Vec::new();
    let mut opening: HashMap<i64, MayOpen> = HashMap::new();
    for d in &unique {
        if !is_new_delivery(d) {
            report.duplicates += d.items.len() as u64;
            continue;
        }
        report.deliveries_new += 1;
        for item in &d.items {
            match item {
                IngestItem::Inbound {
                    number,
                    contact,
                    message_id,
                    timestamp,
                    forward,
                    window_opened,
                    media,
                    counts_for_window,
                    ..
                } => {
                    if old_messages.contains(message_id) || !counted_messages.insert(message_id) {
                        report.duplicates += 1;
                        continue;
                    }
                    report.messages_new += 1;
                    if let Some(f) = forward {
                        forwards.push((&number.phone_number_id, f));
                    }
                    if let Some(media) = media {
                        new_media.push((&number.phone_number_id, message_id, media));
                    }
                    if let (Some(opened), true) = (window_opened, *counts_for_window) {
                        opening
                            .entry(thread_id(number, contact))
                            .or_default()
                            .push((
                                timestamp.unix_seconds(),
                                (number.phone_number_id.as_str(), opened.as_ref()),
                            ));
                    }
                }
                IngestItem::Status {
                    number,
                    message_id,
                    status,
                    forward,
                    ..
                } => {
                    // Stored before: rare (a retry of Meta's), so only then is a key built.
                    let stored_before = !old_statuses.is_empty()
                        && old_statuses
                            .contains(&(message_id.clone(), status_name(*status).to_owned()));
                    if stored_before || !counted_statuses.insert((message_id, status_name(*status)))
                    {
                        report.duplicates += 1;
                        continue;
                    }
                    report.statuses_new += 1;
                    if let Some(f) = forward {
                        forwards.push((&number.phone_number_id, f));
                    }
                }
                IngestItem::TemplateChange(_) | IngestItem::Unprocessed { .. } => {}
            }
        }
    }
    for (thread, candidates) in opening {
        let (customer_at, reaction_at) = previous_summary.get(&thread).copied().unwrap_or_default();
        // Every opening of a batch comes from the same setting; the first says it.
        let previous = candidates
            .first()
            .and_then(|(_, (_, opening))| opening.previous(customer_at, reaction_at));
        let candidates = candidates
            .into_iter()
            .map(|(at, (number, opening))| (at, (number, &opening.event)))
            .collect();
        forwards.extend(windows_opened(previous, candidates));
    }

    let received_at = deliveries
        .iter()
        .map(|d| d.received_at.unix_seconds())
        .max()
        .unwrap_or(0);
    for (phone_number_id, forward) in forwards {
        sqlx::query(crate::forwarding::ENQUEUE_FORWARDS)
            .bind(&forward.thread_key)
            .bind(forward.kind)
            .bind(&forward.body)
            .bind(received_at)
            .bind(phone_number_id)
            .execute(&mut *conn)
            .await?;
    }
    for (phone_number_id, message_id, media) in new_media {
        sqlx::query(crate::media::INSERT_MEDIA)
            .bind(&media.id)
            .bind(phone_number_id)
            .bind(message_id)
            .bind(&media.mime_type)
            .bind(&media.sha256)
            .bind(received_at)
            .execute(&mut *conn)
            .await?;
    }
    for d in unique.iter().filter(|d| is_new_delivery(d)) {
        for item in &d.items {
            match item {
                // Rare, and each may depend on the one before it (a status, then the
                // category of the same template), so one at a time, in order.
                IngestItem::TemplateChange(change) => {
                    crate::templates::apply_change_postgres(&mut *conn, change).await?;
                }
                IngestItem::Unprocessed { field, reason, raw } => {
                    sqlx::query(
                        "INSERT INTO unprocessed_items (delivery_sha256, field, reason, raw)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(&d.body_sha256)
                    .bind(field)
                    .bind(reason)
                    .bind(raw)
                    .execute(&mut *conn)
                    .await?;
                }
                IngestItem::Inbound { .. } | IngestItem::Status { .. } => {}
            }
        }
    }
    Ok(Some(outcome))
}

/// Whether an item may need statements beyond the batch's one statement.
fn needs_more_than_the_statement(item: &IngestItem) -> bool {
    match item {
        IngestItem::Inbound {
            forward,
            window_opened,
            media,
            ..
        } => forward.is_some() || window_opened.is_some() || media.is_some(),
        IngestItem::Status { forward, .. } => forward.is_some(),
        IngestItem::TemplateChange(_) | IngestItem::Unprocessed { .. } => true,
    }
}

/// A thread's new customer messages that may open its window: each message's instant,
/// and the number and `window.opened` event to forward if it does.
type MayOpen<'a> = Vec<(i64, (&'a str, &'a crate::WindowOpening))>;

fn message_id(item: &IngestItem) -> &str {
    match item {
        IngestItem::Inbound { message_id, .. } | IngestItem::Status { message_id, .. } => {
            message_id
        }
        _ => "",
    }
}

fn status_key(item: &IngestItem) -> (&str, &str) {
    match item {
        IngestItem::Status {
            message_id, status, ..
        } => (message_id, status_name(*status)),
        _ => ("", ""),
    }
}

#[derive(Default)]
struct InboundColumns<'a> {
    sha: Vec<&'a str>,
    wamid: Vec<&'a str>,
    thread: Vec<i64>,
    number: Vec<&'a str>,
    kind: Vec<&'a str>,
    at: Vec<i64>,
    entry_point: Vec<&'a str>,
    is_reaction: Vec<bool>,
    counts: Vec<bool>,
    body: Vec<&'a str>,
    profile: Vec<Option<&'a str>>,
}

#[derive(Default)]
struct StatusColumns<'a> {
    sha: Vec<&'a str>,
    wamid: Vec<&'a str>,
    status: Vec<&'a str>,
    at: Vec<i64>,
    category: Vec<Option<&'a str>>,
    fep_expires_at: Vec<Option<i64>>,
    pricing: Vec<Option<&'a str>>,
    conversation: Vec<Option<&'a str>>,
    errors: Vec<Option<&'a str>>,
    thread: Vec<i64>,
    number: Vec<&'a str>,
    outbox_id: Vec<Option<i64>>,
}

/// The batch in one statement. Data-modifying CTEs all run, each against the snapshot
/// the statement started with; what one inserted reaches the next through `RETURNING`.
/// Rows already stored are skipped with `NOT EXISTS`, not `ON CONFLICT DO NOTHING`: a
/// speculative insertion costs a second WAL record per row (its confirmation), a sixth
/// of the statement's WAL (BENCHMARKS.md, session 5). Each key appears once (`DISTINCT
/// ON`); if another process stores the same key between the check and the insert, the
/// statement fails on the unique index (23505) and the batch runs again, finding it.
/// So: the bodies first (`new_d`, only those not stored before), then the items of those
/// bodies only (a stored body was stored with all its items), then what the *new* items
/// change. It answers with what was *not* new (`d`, `m`, `s`): usually nothing. The
/// summary of a thread only ever moves forward (`GREATEST`), and the profile
/// name is that of the thread's newest new message. A thread the batch names but cannot
/// update was merged away by another process after this one remembered it: the statement
/// fails (`hourglass_abort_stale_thread`), so that it stores nothing even when it is its
/// own transaction, and the batch runs again.
const STORE_BATCH: &str = "
WITH new_d AS (
    INSERT INTO webhook_deliveries (sha256, received_at, body)
    SELECT d.* FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS d(sha256, received_at, body)
     WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.sha256 = d.sha256)
    RETURNING sha256
), m_in AS (
    SELECT DISTINCT ON (wamid) * FROM unnest($4::text[], $5::text[], $6::int8[], $7::text[], $8::text[], $9::int8[],
                         $10::text[], $11::bool[], $12::bool[], $13::text[], $14::text[])
        AS m(sha256, wamid, thread_id, phone_number_id, type, at, entry_point, is_reaction,
             counts_for_window, body, profile_name)
    WHERE sha256 IN (SELECT sha256 FROM new_d)
), new_m AS (
    INSERT INTO messages (wamid, thread_id, phone_number_id, direction, type, timestamp,
                          entry_point, is_reaction, counts_for_window, body)
    SELECT wamid, thread_id, phone_number_id, 'inbound', type, at, entry_point, is_reaction,
           counts_for_window, body
      FROM m_in
     WHERE NOT EXISTS (SELECT 1 FROM messages x WHERE x.wamid = m_in.wamid)
    RETURNING wamid
), s_in AS (
    SELECT DISTINCT ON (wamid, status) * FROM unnest($15::text[], $16::text[], $17::text[], $18::int8[], $19::text[],
                         $20::int8[], $21::text[], $22::text[], $23::text[], $24::int8[], $25::text[])
        AS s(sha256, wamid, status, at, category, fep_expires_at, pricing, conversation, errors,
             thread_id, phone_number_id)
    WHERE sha256 IN (SELECT sha256 FROM new_d)
), new_s AS (
    INSERT INTO statuses (wamid, status, timestamp, category, fep_expires_at, pricing, conversation, errors)
    SELECT wamid, status, at, category, fep_expires_at, pricing, conversation, errors FROM s_in
     WHERE NOT EXISTS (SELECT 1 FROM statuses x WHERE x.wamid = s_in.wamid AND x.status = s_in.status)
    RETURNING wamid, status
), s_new AS (
    SELECT s.* FROM s_in s JOIN new_s USING (wamid, status)
), outbound AS (
    -- A business message sent outside Hourglass is first heard of through its statuses:
    -- they still count.
    INSERT INTO messages (wamid, thread_id, phone_number_id, direction, type, timestamp, category, delivered_at)
    SELECT wamid, min(thread_id), min(phone_number_id), 'outbound', 'unknown', min(at), min(category),
           min(at) FILTER (WHERE status IN ('delivered', 'read'))
      FROM s_new GROUP BY wamid
    ON CONFLICT (wamid) DO UPDATE SET
      timestamp = LEAST(messages.timestamp, excluded.timestamp),
      category = COALESCE(messages.category, excluded.category),
      delivered_at = CASE
        WHEN excluded.delivered_at IS NULL THEN messages.delivered_at
        ELSE LEAST(COALESCE(messages.delivered_at, excluded.delivered_at), excluded.delivered_at) END
    RETURNING 1
), reconciled AS (
    -- Outbox messages whose statuses say Meta accepted them (see `outbox`): each once,
    -- by its first status (the same change as `outbox::RECONCILE_FROM_STATUS`, for
    -- many rows at once).
    UPDATE outbox SET
      wamid = r.wamid,
      finished_at = COALESCE(outbox.finished_at, r.at),
      state = CASE WHEN outbox.state IN ('queued', 'sending') THEN 'sent' ELSE outbox.state END,
      lease_until = NULL, error_code = NULL, error_message = NULL
      FROM (SELECT DISTINCT ON (outbox_id) outbox_id, wamid, phone_number_id, at
              FROM unnest($15::text[], $16::text[], $18::int8[], $25::text[], $28::int8[])
                AS s(sha256, wamid, at, phone_number_id, outbox_id)
             WHERE outbox_id IS NOT NULL AND sha256 IN (SELECT sha256 FROM new_d)
             ORDER BY outbox_id, wamid, phone_number_id, at) AS r
     WHERE outbox.id = r.outbox_id AND outbox.phone_number_id = r.phone_number_id
       AND (outbox.wamid IS NULL OR outbox.wamid = r.wamid)
       AND outbox.state IN ('queued', 'sending', 'sent')
    RETURNING 1
), summary AS (
    SELECT thread_id,
           max(at) FILTER (WHERE counts AND NOT is_reaction) AS customer_at,
           max(at) FILTER (WHERE counts AND is_reaction) AS reaction_at,
           max(at) FILTER (WHERE fep_signal) AS fep_at,
           (array_agg(profile_name ORDER BY at DESC) FILTER (WHERE profile_name IS NOT NULL))[1] AS profile_name
      FROM (SELECT m.thread_id, m.at, m.is_reaction, TRUE AS counts, m.entry_point = 'ad' AS fep_signal, m.profile_name
              FROM m_in m WHERE m.counts_for_window AND m.wamid IN (SELECT wamid FROM new_m)
            UNION ALL
            SELECT thread_id, at, FALSE, FALSE, TRUE, NULL FROM s_new WHERE fep_expires_at IS NOT NULL) AS x
     GROUP BY thread_id
), updated AS (
    UPDATE threads SET
      last_customer_at = GREATEST(threads.last_customer_at, v.customer_at),
      last_reaction_at = GREATEST(threads.last_reaction_at, v.reaction_at),
      last_fep_signal_at = GREATEST(threads.last_fep_signal_at, v.fep_at),
      profile_name = COALESCE(v.profile_name, threads.profile_name)
      FROM summary v WHERE threads.id = v.thread_id
    RETURNING threads.id
), notified AS (
    SELECT pg_notify($26, $27) WHERE $27::text IS NOT NULL
)
SELECT 'd' AS kind, sha256 AS a, NULL::text AS b FROM unnest($1::text[]) AS d(sha256)
  WHERE sha256 NOT IN (SELECT sha256 FROM new_d)
UNION ALL SELECT 'm', wamid, NULL FROM m_in WHERE wamid NOT IN (SELECT wamid FROM new_m)
UNION ALL SELECT 's', wamid, status FROM s_in WHERE (wamid, status) NOT IN (SELECT wamid, status FROM new_s)
UNION ALL SELECT 'gone', hourglass_abort_stale_thread(), NULL
  WHERE (SELECT count(*) FROM summary) > (SELECT count(*) FROM updated)
UNION ALL SELECT 'n', NULL, NULL FROM notified";

/// Finds the threads of `keys` (creating those that do not exist) and returns the thread
/// id of each key; every thread it saw (merged ones included) is added to `touched`,
/// those whose keys it read to the outcome's `learned`, and those it merged away to its
/// `merged_away`.
async fn resolve_threads(
    conn: &mut PgConnection,
    phone_number_id: &str,
    keys: &[ContactKey],
    touched: &mut Touched,
    outcome: &mut BatchOutcome,
) -> Result<HashMap<ContactKey, i64>, StoreError> {
    let mut threads = select_threads(conn, phone_number_id, keys).await?;
    let missing: Vec<&ContactKey> = keys
        .iter()
        .filter(|k| match_thread(&threads, k).is_none())
        .collect();
    if !missing.is_empty() {
        let wa_ids: Vec<Option<&str>> = missing.iter().map(|k| k.wa_id.as_deref()).collect();
        let user_ids: Vec<Option<&str>> = missing.iter().map(|k| k.user_id.as_deref()).collect();
        let rows = sqlx::query(
            "INSERT INTO threads (phone_number_id, wa_id, user_id)
             SELECT $1, * FROM unnest($2::text[], $3::text[])
             ON CONFLICT DO NOTHING RETURNING id, wa_id, user_id",
        )
        .bind(phone_number_id)
        .bind(&wa_ids)
        .bind(&user_ids)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            threads.push(ThreadKeys {
                id: row.try_get(0)?,
                wa_id: row.try_get(1)?,
                user_id: row.try_get(2)?,
            });
        }
    }
    if keys.iter().any(|k| match_thread(&threads, k).is_none()) {
        // Another writer created some of them between our read and our insert.
        threads = select_threads(conn, phone_number_id, keys).await?;
    }
    let mut resolved = HashMap::with_capacity(keys.len());
    let mut merged: HashMap<i64, i64> = HashMap::new();
    let mut changed: HashSet<i64> = HashSet::new();
    for key in keys {
        let thread = match_thread(&threads, key).ok_or_else(|| {
            StoreError::Corrupt(format!("no thread for contact {key:?} after creating it"))
        })?;
        // Found by phone number, but the business-scoped id has a thread of its own (the
        // contact wrote once with each): one contact, one thread.
        if let (Some(_), None, Some(learned_key)) = (&thread.wa_id, &thread.user_id, &key.user_id) {
            let other = threads
                .iter()
                .find(|t| {
                    t.id != thread.id
                        && t.user_id.as_ref() == Some(learned_key)
                        && !merged.contains_key(&t.id)
                })
                .map(|t| t.id);
            if let Some(gone) = other {
                for sql in MERGE_THREADS_POSTGRES {
                    sqlx::query(sql)
                        .bind(thread.id)
                        .bind(gone)
                        .execute(&mut *conn)
                        .await?;
                }
                merged.insert(gone, thread.id);
            }
        }
        // Learn the key the thread lacked, unless another thread already owns it.
        for (column, have, learn) in [
            ("wa_id", &thread.wa_id, &key.wa_id),
            ("user_id", &thread.user_id, &key.user_id),
        ] {
            if have.is_none() && learn.is_some() {
                sqlx::query(&format!(
                    "UPDATE threads SET {column} = $2 WHERE id = $1 AND {column} IS NULL
                     AND NOT EXISTS (SELECT 1 FROM threads other WHERE other.phone_number_id = $3 AND other.{column} = $2)"
                ))
                .bind(thread.id)
                .bind(learn)
                .bind(phone_number_id)
                .execute(&mut *conn)
                .await?;
                changed.insert(thread.id);
            }
        }
        resolved.insert(key.clone(), thread.id);
    }
    for id in resolved.values_mut() {
        if let Some(kept) = merged.get(id) {
            *id = *kept;
        }
    }
    touched.threads.extend(threads.iter().map(|t| t.id));
    outcome.merged_away.extend(
        merged
            .keys()
            .map(|gone| (phone_number_id.to_owned(), *gone)),
    );
    // Remembered as read: a thread that merged or learned a key is read again next time.
    outcome.learned.extend(
        threads
            .iter()
            .filter(|t| {
                !merged.contains_key(&t.id)
                    && !merged.values().any(|kept| *kept == t.id)
                    && !changed.contains(&t.id)
            })
            .map(|t| Learned {
                phone_number_id: phone_number_id.to_owned(),
                thread_id: t.id,
                wa_id: t.wa_id.clone(),
                user_id: t.user_id.clone(),
            }),
    );
    Ok(resolved)
}

/// Moves thread `$2` into thread `$1` (messages, refusals, the latest of each summary
/// instant) and deletes it, with what the FEP clock noted about it: the merged thread is
/// evaluated again when the clock next finds it. (SQLite's twin, without `GREATEST`, is
/// `MERGE_THREADS_SQLITE` in `sqlite_writer`.)
const MERGE_THREADS_POSTGRES: [&str; 5] = [
    "DELETE FROM fep_notices WHERE thread_id = $2 AND thread_id <> $1",
    "UPDATE messages SET thread_id = $1 WHERE thread_id = $2",
    "UPDATE refusals SET thread_id = $1 WHERE thread_id = $2",
    "UPDATE threads SET
       last_customer_at = GREATEST(threads.last_customer_at, gone.c),
       last_reaction_at = GREATEST(threads.last_reaction_at, gone.r),
       last_fep_signal_at = GREATEST(threads.last_fep_signal_at, gone.f),
       profile_name = COALESCE(threads.profile_name, gone.p)
     FROM (SELECT last_customer_at AS c, last_reaction_at AS r, last_fep_signal_at AS f, profile_name AS p
             FROM threads WHERE id = $2) AS gone
     WHERE threads.id = $1",
    "DELETE FROM threads WHERE id = $2",
];

/// The threads holding any of `keys`: one index search per key, each key column given
/// as one array (a fixed text, prepared once).
async fn select_threads(
    conn: &mut PgConnection,
    phone_number_id: &str,
    keys: &[ContactKey],
) -> Result<Vec<ThreadKeys>, StoreError> {
    let wa_ids: Vec<&str> = keys.iter().filter_map(|k| k.wa_id.as_deref()).collect();
    let user_ids: Vec<&str> = keys.iter().filter_map(|k| k.user_id.as_deref()).collect();
    // A lateral lookup per key (`LIMIT 1` keeps PostgreSQL from turning it into a join
    // that reads every thread of the number).
    let rows = sqlx::query(
        "SELECT t.id, t.wa_id, t.user_id FROM unnest($2::text[]) AS k(key),
           LATERAL (SELECT id, wa_id, user_id FROM threads
                     WHERE phone_number_id = $1 AND wa_id = k.key LIMIT 1) AS t
         UNION
         SELECT t.id, t.wa_id, t.user_id FROM unnest($3::text[]) AS k(key),
           LATERAL (SELECT id, wa_id, user_id FROM threads
                     WHERE phone_number_id = $1 AND user_id = k.key LIMIT 1) AS t",
    )
    .bind(phone_number_id)
    .bind(&wa_ids)
    .bind(&user_ids)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ThreadKeys {
                id: row.try_get(0)?,
                wa_id: row.try_get(1)?,
                user_id: row.try_get(2)?,
            })
        })
        .collect()
}
