//! Set-based ingestion for PostgreSQL: a batch of webhook deliveries becomes a handful of
//! multi-row statements (deliveries, numbers, threads, messages, statuses,
//! thread summaries) instead of several statements per item, because a round trip per
//! statement, not the work inside it, is what limits a durable writer.
//!
//! The planning (grouping, deduplicating, folding summaries) is plain Rust here; the SQL
//! is expanded by [`define_batch_ingest!`] for PostgreSQL's connection type. (SQLite
//! ingests through its own writer thread, `sqlite_writer`, where per-row statements cost
//! microseconds.)

use std::collections::{BTreeMap, HashMap, HashSet};

use hourglass_core::{EntryPoint, StatusKind};

use crate::model::*;

/// Rows per multi-row statement: well under SQLite's 32,766 and PostgreSQL's 65,535
/// bound parameters for the widest row (10 columns).
pub(crate) const CHUNK: usize = 1_000;

/// A thread as read back while resolving contacts.
#[derive(Clone, Debug)]
pub(crate) struct ThreadKeys {
    pub id: i64,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
}

/// The thread a contact key resolves to among `threads`: by `wa_id` first, then by
/// `user_id` (the same precedence as single lookups).
pub(crate) fn match_thread<'t>(
    threads: &'t [ThreadKeys],
    key: &ContactKey,
) -> Option<&'t ThreadKeys> {
    key.wa_id
        .as_ref()
        .and_then(|w| threads.iter().find(|t| t.wa_id.as_ref() == Some(w)))
        .or_else(|| {
            key.user_id
                .as_ref()
                .and_then(|u| threads.iter().find(|t| t.user_id.as_ref() == Some(u)))
        })
}

/// The contacts of a batch, per business number, each once.
pub(crate) fn contacts_by_number(items: &[&IngestItem]) -> BTreeMap<String, Vec<ContactKey>> {
    let mut seen: HashSet<(&str, &ContactKey)> = HashSet::new();
    let mut out: BTreeMap<String, Vec<ContactKey>> = BTreeMap::new();
    for item in items {
        let (number, contact) = match item {
            IngestItem::Inbound {
                number, contact, ..
            }
            | IngestItem::Status {
                number, contact, ..
            } => (number, contact),
            IngestItem::Unprocessed { .. } | IngestItem::TemplateChange(_) => continue,
        };
        if seen.insert((number.phone_number_id.as_str(), contact)) {
            out.entry(number.phone_number_id.clone())
                .or_default()
                .push(contact.clone());
        }
    }
    for keys in out.values_mut() {
        keys.sort_by(|a, b| (&a.wa_id, &a.user_id).cmp(&(&b.wa_id, &b.user_id)));
    }
    out
}

/// Per thread, what new items change in its summary columns.
#[derive(Default, Debug, Clone)]
pub(crate) struct SummaryChange {
    pub last_customer_at: Option<i64>,
    pub last_reaction_at: Option<i64>,
    pub last_fep_signal_at: Option<i64>,
    /// The profile name of its newest message in the batch, and that message's instant.
    pub profile_name: Option<(i64, String)>,
}

impl SummaryChange {
    pub fn add_inbound(
        &mut self,
        timestamp: i64,
        is_reaction: bool,
        entry_point: EntryPoint,
        profile: Option<&str>,
    ) {
        let slot = if is_reaction {
            &mut self.last_reaction_at
        } else {
            &mut self.last_customer_at
        };
        *slot = Some(slot.map_or(timestamp, |t| t.max(timestamp)));
        if entry_point == EntryPoint::Ad {
            self.add_fep_signal(timestamp);
        }
        if let Some(name) = profile {
            if self
                .profile_name
                .as_ref()
                .is_none_or(|(t, _)| timestamp >= *t)
            {
                self.profile_name = Some((timestamp, name.to_owned()));
            }
        }
    }

    pub fn add_fep_signal(&mut self, timestamp: i64) {
        self.last_fep_signal_at = Some(
            self.last_fep_signal_at
                .map_or(timestamp, |t| t.max(timestamp)),
        );
    }
}

/// Of a thread's new customer messages (instant, and what to emit if it opens the
/// window), those that open a window, given the latest customer message before them:
/// each is judged against the one before it.
pub(crate) fn windows_opened<T>(previous: Option<i64>, mut candidates: Vec<(i64, T)>) -> Vec<T> {
    candidates.sort_by_key(|(at, _)| *at);
    let mut latest = previous.map(hourglass_core::Instant::from_unix_seconds);
    let mut opened = Vec::new();
    for (at, event) in candidates {
        let at = hourglass_core::Instant::from_unix_seconds(at);
        if hourglass_core::opens_window(latest, at) {
            opened.push(event);
        }
        latest = Some(latest.map_or(at, |l| l.max(at)));
    }
    opened
}

/// Per outbound message, what its new statuses say: grouped so one statement never
/// touches the same row twice (PostgreSQL refuses that in `ON CONFLICT DO UPDATE`).
#[derive(Debug, Clone)]
pub(crate) struct OutboundChange {
    pub thread_id: i64,
    pub phone_number_id: String,
    pub earliest: i64,
    pub category: Option<&'static str>,
    pub delivered_at: Option<i64>,
}

pub(crate) fn fold_outbound(
    changes: &mut HashMap<String, OutboundChange>,
    message_id: &str,
    thread_id: i64,
    phone_number_id: &str,
    status: StatusKind,
    timestamp: i64,
    category: Option<&'static str>,
) {
    let delivered = matches!(status, StatusKind::Delivered | StatusKind::Read).then_some(timestamp);
    let change = changes
        .entry(message_id.to_owned())
        .or_insert_with(|| OutboundChange {
            thread_id,
            phone_number_id: phone_number_id.to_owned(),
            earliest: timestamp,
            category,
            delivered_at: delivered,
        });
    change.earliest = change.earliest.min(timestamp);
    change.category = match (change.category, category) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    change.delivered_at = match (change.delivered_at, delivered) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// The key a row of an item is locked by: Meta's message id, then the status.
pub(crate) fn item_key(item: &IngestItem) -> (&str, &str) {
    match item {
        IngestItem::Inbound { message_id, .. } => (message_id, ""),
        IngestItem::Status {
            message_id, status, ..
        } => (message_id, status_name(*status)),
        IngestItem::TemplateChange(change) => (&change.value, change.kind.as_str()),
        IngestItem::Unprocessed { raw, .. } => (raw, ""),
    }
}

/// Moves thread `p2` into thread `p1` (messages, refusals, the latest of each summary
/// instant) and deletes it, with what the FEP clock noted about it: the merged thread is
/// evaluated again when the clock next finds it.
pub(crate) fn merge_threads_sql(p1: &str, p2: &str) -> [String; 5] {
    [
        format!("DELETE FROM fep_notices WHERE thread_id = {p2} AND thread_id <> {p1}"),
        format!("UPDATE messages SET thread_id = {p1} WHERE thread_id = {p2}"),
        format!("UPDATE refusals SET thread_id = {p1} WHERE thread_id = {p2}"),
        format!(
            "UPDATE threads SET
               last_customer_at = GREATEST(threads.last_customer_at, gone.c),
               last_reaction_at = GREATEST(threads.last_reaction_at, gone.r),
               last_fep_signal_at = GREATEST(threads.last_fep_signal_at, gone.f),
               profile_name = COALESCE(threads.profile_name, gone.p)
             FROM (SELECT last_customer_at AS c, last_reaction_at AS r, last_fep_signal_at AS f, profile_name AS p
                     FROM threads WHERE id = {p2}) AS gone
             WHERE threads.id = {p1}"
        ),
        format!("DELETE FROM threads WHERE id = {p2}"),
    ]
}

/// Expands the batch ingestion for one database: `$conn` is its connection type.
macro_rules! define_batch_ingest {
    ($db:ty, $conn:ty) => {
        use std::collections::{HashMap, HashSet};

        use sqlx::{QueryBuilder, Row};

        use crate::batch::*;
        use crate::model::*;
        use crate::StoreError;

        /// Finds the threads of `keys` (creating those that do not exist) and returns
        /// the thread id of each key; every thread it saw (merged ones included) is added
        /// to `touched`.
        async fn resolve_threads(
            conn: &mut $conn,
            phone_number_id: &str,
            keys: &[ContactKey],
            touched: &mut crate::window_cache::Touched,
        ) -> Result<HashMap<ContactKey, i64>, StoreError> {
            let mut threads = select_threads(conn, phone_number_id, keys).await?;
            let missing: Vec<&ContactKey> = keys.iter().filter(|k| match_thread(&threads, k).is_none()).collect();
            for chunk in missing.chunks(CHUNK) {
                let mut insert: QueryBuilder<$db> =
                    QueryBuilder::new("INSERT INTO threads (phone_number_id, wa_id, user_id) ");
                insert.push_values(chunk, |mut row, key| {
                    row.push_bind(phone_number_id).push_bind(&key.wa_id).push_bind(&key.user_id);
                });
                insert.push(" ON CONFLICT DO NOTHING RETURNING id, wa_id, user_id");
                for row in insert.build().fetch_all(&mut *conn).await? {
                    threads.push(ThreadKeys { id: row.get(0), wa_id: row.get(1), user_id: row.get(2) });
                }
            }
            if keys.iter().any(|k| match_thread(&threads, k).is_none()) {
                // Another writer created some of them between our read and our insert.
                threads = select_threads(conn, phone_number_id, keys).await?;
            }
            let mut resolved = HashMap::with_capacity(keys.len());
            let mut merged: HashMap<i64, i64> = HashMap::new();
            for key in keys {
                let thread = match_thread(&threads, key).ok_or_else(|| {
                    StoreError::Corrupt(format!("no thread for contact {key:?} after creating it"))
                })?;
                // Found by phone number, but the business-scoped id has a thread of its
                // own (the contact wrote once with each): one contact, one thread.
                if let (Some(_), None, Some(learned)) = (&thread.wa_id, &thread.user_id, &key.user_id) {
                    let other = threads
                        .iter()
                        .find(|t| t.id != thread.id && t.user_id.as_ref() == Some(learned) && !merged.contains_key(&t.id))
                        .map(|t| t.id);
                    if let Some(gone) = other {
                        let (p1, p2, _) = placeholders();
                        for sql in merge_threads_sql(p1, p2) {
                            sqlx::query(&sql).bind(thread.id).bind(gone).execute(&mut *conn).await?;
                        }
                        merged.insert(gone, thread.id);
                    }
                }
                // Learn the key the thread lacked, unless another thread already owns it.
                if thread.wa_id.is_none() && key.wa_id.is_some() {
                    sqlx::query(&fill_key_sql("wa_id")).bind(thread.id).bind(&key.wa_id).bind(phone_number_id)
                        .execute(&mut *conn).await?;
                }
                if thread.user_id.is_none() && key.user_id.is_some() {
                    sqlx::query(&fill_key_sql("user_id")).bind(thread.id).bind(&key.user_id).bind(phone_number_id)
                        .execute(&mut *conn).await?;
                }
                resolved.insert(key.clone(), thread.id);
            }
            for id in resolved.values_mut() {
                if let Some(kept) = merged.get(id) {
                    *id = *kept;
                }
            }
            touched.threads.extend(threads.iter().map(|t| t.id));
            Ok(resolved)
        }

        async fn select_threads(
            conn: &mut $conn,
            phone_number_id: &str,
            keys: &[ContactKey],
        ) -> Result<Vec<ThreadKeys>, StoreError> {
            let mut threads = Vec::new();
            for chunk in keys.chunks(CHUNK) {
                let wa_ids: Vec<String> = chunk.iter().filter_map(|k| k.wa_id.clone()).collect();
                let user_ids: Vec<String> = chunk.iter().filter_map(|k| k.user_id.clone()).collect();
                // One index search per key column, each given the keys as one array: a
                // statement whose text does not depend on the batch, so it is prepared
                // once, and whose plan cannot degrade into a scan of the number's threads.
                let mut select: QueryBuilder<$db> = QueryBuilder::new(
                    "SELECT id, wa_id, user_id FROM threads WHERE phone_number_id = ",
                );
                select.push_bind(phone_number_id).push(" AND wa_id = ANY(").push_bind(wa_ids);
                select.push(") UNION ALL SELECT id, wa_id, user_id FROM threads WHERE phone_number_id = ");
                select.push_bind(phone_number_id).push(" AND user_id = ANY(").push_bind(user_ids).push(")");
                for row in select.build().fetch_all(&mut *conn).await? {
                    threads.push(ThreadKeys { id: row.get(0), wa_id: row.get(1), user_id: row.get(2) });
                }
            }
            Ok(threads)
        }

        fn fill_key_sql(column: &str) -> String {
            let (p1, p2, p3) = placeholders();
            format!(
                "UPDATE threads SET {column} = {p2} WHERE id = {p1} AND {column} IS NULL
                 AND NOT EXISTS (SELECT 1 FROM threads other WHERE other.phone_number_id = {p3} AND other.{column} = {p2})"
            )
        }

        /// Stores a batch of deliveries on one connection, inside the caller's transaction.
        /// Stores a batch; what it changed, for window caches, goes to `touched`.
        pub(crate) async fn ingest_batch(
            conn: &mut $conn,
            deliveries: &[WebhookDelivery],
            touched: &mut crate::window_cache::Touched,
        ) -> Result<IngestReport, StoreError> {
            let mut report = IngestReport::default();

            // 1. The raw bodies. Only bodies not stored before have items to store: a
            //    stored body was stored with all its items, in the same transaction.
            let mut seen = HashSet::new();
            // Rows go in key order, so concurrent batches from several processes lock
            // them in the same order and do not deadlock.
            let mut unique: Vec<&WebhookDelivery> =
                deliveries.iter().filter(|d| seen.insert(d.body_sha256.as_str())).collect();
            unique.sort_by(|a, b| a.body_sha256.cmp(&b.body_sha256));
            let mut new_bodies: HashSet<String> = HashSet::new();
            for chunk in unique.chunks(CHUNK) {
                let mut insert: QueryBuilder<$db> =
                    QueryBuilder::new("INSERT INTO webhook_deliveries (sha256, received_at, body) ");
                insert.push_values(chunk, |mut row, d| {
                    row.push_bind(&d.body_sha256).push_bind(d.received_at.unix_seconds()).push_bind(&d.body);
                });
                insert.push(" ON CONFLICT (sha256) DO NOTHING RETURNING sha256");
                for row in insert.build().fetch_all(&mut *conn).await? {
                    new_bodies.insert(row.get(0));
                }
            }
            let mut items: Vec<(&str, &IngestItem)> = Vec::new();
            for d in deliveries {
                if new_bodies.remove(&d.body_sha256) {
                    report.deliveries_new += 1;
                    items.extend(d.items.iter().map(|i| (d.body_sha256.as_str(), i)));
                } else {
                    report.duplicates += d.items.len() as u64;
                }
            }
            if items.is_empty() {
                return Ok(report);
            }

            // 2. Business numbers, each once.
            let mut numbers: Vec<&NumberRef> = Vec::new();
            for (_, item) in &items {
                if let IngestItem::Inbound { number, .. } | IngestItem::Status { number, .. } = item {
                    if !numbers.iter().any(|n| n.phone_number_id == number.phone_number_id) {
                        numbers.push(number);
                    }
                }
            }
            if !numbers.is_empty() {
                let mut upsert: QueryBuilder<$db> =
                    QueryBuilder::new("INSERT INTO business_numbers (phone_number_id, waba_id, display_phone_number) ");
                upsert.push_values(&numbers, |mut row, n| {
                    row.push_bind(&n.phone_number_id).push_bind(&n.waba_id).push_bind(&n.display_phone_number);
                });
                // DO NOTHING takes no lock on a number that exists: an upsert would lock
                // the number's row until commit and make every concurrent batch wait.
                upsert.push(" ON CONFLICT (phone_number_id) DO NOTHING");
                upsert.build().execute(&mut *conn).await?;
                for n in &numbers {
                    let (p1, p2, p3) = placeholders();
                    sqlx::query(&format!(
                        "UPDATE business_numbers SET waba_id = COALESCE(waba_id, {p2}),
                           display_phone_number = COALESCE(display_phone_number, {p3})
                         WHERE phone_number_id = {p1} AND (waba_id IS NULL OR display_phone_number IS NULL)"
                    ))
                    .bind(&n.phone_number_id)
                    .bind(&n.waba_id)
                    .bind(&n.display_phone_number)
                    .execute(&mut *conn)
                    .await?;
                }
            }

            // 3. Threads, per number.
            let just_items: Vec<&IngestItem> = items.iter().map(|(_, i)| *i).collect();
            let mut thread_of: HashMap<(String, ContactKey), i64> = HashMap::new();
            for (phone_number_id, keys) in contacts_by_number(&just_items) {
                for (key, id) in resolve_threads(conn, &phone_number_id, &keys, touched).await? {
                    thread_of.insert((phone_number_id.clone(), key), id);
                }
            }
            let thread_id = |number: &NumberRef, contact: &ContactKey| -> i64 {
                thread_of[&(number.phone_number_id.clone(), contact.clone())]
            };

            // 4. Customer messages, deduplicated on Meta's id.
            let mut inbound: Vec<&IngestItem> =
                just_items.iter().copied().filter(|i| matches!(i, IngestItem::Inbound { .. })).collect();
            inbound.sort_by_key(|i| item_key(i));
            let mut new_messages: HashSet<String> = HashSet::new();
            for chunk in inbound.chunks(CHUNK) {
                let mut insert: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO messages (wamid, thread_id, phone_number_id, direction, type, timestamp,
                                           entry_point, is_reaction, counts_for_window, body) ",
                );
                insert.push_values(chunk, |mut row, item| {
                    if let IngestItem::Inbound {
                        number, contact, message_id, timestamp, message_type, entry_point,
                        is_reaction, counts_for_window, raw, ..
                    } = item
                    {
                        row.push_bind(message_id)
                            .push_bind(thread_id(number, contact))
                            .push_bind(&number.phone_number_id)
                            .push_bind("inbound")
                            .push_bind(message_type)
                            .push_bind(timestamp.unix_seconds())
                            .push_bind(entry_point_name(*entry_point))
                            .push_bind(*is_reaction)
                            .push_bind(*counts_for_window)
                            .push_bind(raw);
                    }
                });
                insert.push(" ON CONFLICT (wamid) DO NOTHING RETURNING wamid");
                for row in insert.build().fetch_all(&mut *conn).await? {
                    new_messages.insert(row.get(0));
                }
            }

            // 5. Statuses, deduplicated on (id, status).
            let mut statuses: Vec<&IngestItem> =
                just_items.iter().copied().filter(|i| matches!(i, IngestItem::Status { .. })).collect();
            statuses.sort_by_key(|i| item_key(i));
            let mut new_statuses: HashSet<(String, String)> = HashSet::new();
            for chunk in statuses.chunks(CHUNK) {
                let mut insert: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO statuses (wamid, status, timestamp, category, fep_expires_at, pricing, conversation, errors) ",
                );
                insert.push_values(chunk, |mut row, item| {
                    if let IngestItem::Status {
                        message_id, status, timestamp, category, fep_expires_at, pricing, conversation, errors, ..
                    } = item
                    {
                        row.push_bind(message_id)
                            .push_bind(status_name(*status))
                            .push_bind(timestamp.unix_seconds())
                            .push_bind(category.map(|c| c.as_str()))
                            .push_bind(fep_expires_at.map(|i| i.unix_seconds()))
                            .push_bind(pricing)
                            .push_bind(conversation)
                            .push_bind(errors);
                    }
                });
                insert.push(" ON CONFLICT (wamid, status) DO NOTHING RETURNING wamid, status");
                for row in insert.build().fetch_all(&mut *conn).await? {
                    new_statuses.insert((row.get(0), row.get(1)));
                }
            }

            // 6. What the new items change: thread summaries and outbound messages.
            let mut summaries: HashMap<i64, SummaryChange> = HashMap::new();
            let mut outbound: HashMap<String, OutboundChange> = HashMap::new();
            let mut counted_messages: HashSet<&str> = HashSet::new();
            let mut counted_statuses: HashSet<(&str, &str)> = HashSet::new();
            let mut forwards: Vec<(&String, &Box<crate::ForwardItem>)> = Vec::new();
            // Per thread, new customer messages that may open its window.
            let mut may_open: std::collections::BTreeMap<i64, Vec<(i64, (&String, &Box<crate::ForwardItem>))>> =
                std::collections::BTreeMap::new();
            let mut new_media: Vec<(&String, &String, &Box<crate::MediaRef>)> = Vec::new();
            for item in &just_items {
                match item {
                    IngestItem::Inbound {
                        number, contact, profile_name, message_id, timestamp, entry_point,
                        is_reaction, counts_for_window, forward, window_opened, media, ..
                    } => {
                        if !new_messages.contains(message_id.as_str()) || !counted_messages.insert(message_id) {
                            report.duplicates += 1;
                            continue;
                        }
                        report.messages_new += 1;
                        if let Some(f) = forward {
                            forwards.push((&number.phone_number_id, f));
                        }
                        if let Some(m) = media {
                            new_media.push((&number.phone_number_id, message_id, m));
                        }
                        if let (Some(opened), true, false) = (window_opened, *counts_for_window, *is_reaction) {
                            may_open.entry(thread_id(number, contact)).or_default().push((
                                timestamp.unix_seconds(),
                                (&number.phone_number_id, opened),
                            ));
                        }
                        if *counts_for_window {
                            summaries.entry(thread_id(number, contact)).or_default().add_inbound(
                                timestamp.unix_seconds(),
                                *is_reaction,
                                *entry_point,
                                profile_name.as_deref(),
                            );
                        }
                    }
                    IngestItem::Status { number, contact, message_id, status, timestamp, category, fep_expires_at, forward, .. } => {
                        let key = (message_id.clone(), status_name(*status).to_owned());
                        if !new_statuses.contains(&key) || !counted_statuses.insert((message_id, status_name(*status))) {
                            report.duplicates += 1;
                            continue;
                        }
                        report.statuses_new += 1;
                        if let Some(f) = forward {
                            forwards.push((&number.phone_number_id, f));
                        }
                        let thread = thread_id(number, contact);
                        touched.numbers.insert(number.phone_number_id.clone());
                        fold_outbound(
                            &mut outbound, message_id, thread, &number.phone_number_id, *status,
                            timestamp.unix_seconds(), category.map(|c| c.as_str()),
                        );
                        if fep_expires_at.is_some() {
                            summaries.entry(thread).or_default().add_fep_signal(timestamp.unix_seconds());
                        }
                    }
                    IngestItem::Unprocessed { .. } | IngestItem::TemplateChange(_) => {}
                }
            }

            // A business message sent outside Hourglass is first heard of through its
            // statuses: they still count.
            let mut outbound: Vec<(String, OutboundChange)> = outbound.into_iter().collect();
            outbound.sort_by(|a, b| a.0.cmp(&b.0));
            for chunk in outbound.chunks(CHUNK) {
                let mut upsert: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO messages (wamid, thread_id, phone_number_id, direction, type, timestamp, category, delivered_at) ",
                );
                upsert.push_values(chunk, |mut row, (wamid, c)| {
                    row.push_bind(wamid)
                        .push_bind(c.thread_id)
                        .push_bind(&c.phone_number_id)
                        .push_bind("outbound")
                        .push_bind("unknown")
                        .push_bind(c.earliest)
                        .push_bind(c.category)
                        .push_bind(c.delivered_at);
                });
                upsert.push(
                    " ON CONFLICT (wamid) DO UPDATE SET
                       timestamp = CASE WHEN excluded.timestamp < messages.timestamp THEN excluded.timestamp ELSE messages.timestamp END,
                       category = COALESCE(messages.category, excluded.category),
                       delivered_at = CASE
                         WHEN excluded.delivered_at IS NULL THEN messages.delivered_at
                         WHEN messages.delivered_at IS NULL OR excluded.delivered_at < messages.delivered_at THEN excluded.delivered_at
                         ELSE messages.delivered_at END",
                );
                upsert.build().execute(&mut *conn).await?;
            }

            // Which of them open it: read each thread's latest customer message before
            // this batch, rows locked in id order until the commit.
            if !may_open.is_empty() {
                let ids: Vec<i64> = may_open.keys().copied().collect();
                let previous: Vec<(i64, Option<i64>)> = sqlx::query_as(
                    "SELECT id, last_customer_at FROM threads WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                )
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?;
                for (id, previous) in previous {
                    if let Some(candidates) = may_open.remove(&id) {
                        forwards.extend(windows_opened(previous, candidates));
                    }
                }
            }

            let mut summaries: Vec<(i64, SummaryChange)> = summaries.into_iter().collect();
            summaries.sort_by_key(|(id, _)| *id);
            for chunk in summaries.chunks(CHUNK) {
                let mut update: QueryBuilder<$db> =
                    QueryBuilder::new("WITH v (id, customer_at, reaction_at, fep_at, profile_name) AS (");
                update.push_values(chunk, |mut row, (id, s)| {
                    row.push_bind(*id)
                        .push_bind(s.last_customer_at)
                        .push_bind(s.last_reaction_at)
                        .push_bind(s.last_fep_signal_at)
                        .push_bind(s.profile_name.as_ref().map(|(_, n)| n.clone()));
                });
                update.push(
                    ") UPDATE threads SET
                       last_customer_at = CASE WHEN v.customer_at IS NOT NULL AND (threads.last_customer_at IS NULL OR threads.last_customer_at < v.customer_at)
                                               THEN v.customer_at ELSE threads.last_customer_at END,
                       last_reaction_at = CASE WHEN v.reaction_at IS NOT NULL AND (threads.last_reaction_at IS NULL OR threads.last_reaction_at < v.reaction_at)
                                               THEN v.reaction_at ELSE threads.last_reaction_at END,
                       last_fep_signal_at = CASE WHEN v.fep_at IS NOT NULL AND (threads.last_fep_signal_at IS NULL OR threads.last_fep_signal_at < v.fep_at)
                                                 THEN v.fep_at ELSE threads.last_fep_signal_at END,
                       profile_name = COALESCE(v.profile_name, threads.profile_name)
                     FROM v WHERE threads.id = v.id",
                );
                update.build().execute(&mut *conn).await?;
            }

            // 7. Items kept raw.
            let unprocessed: Vec<(&str, &IngestItem)> =
                items.iter().copied().filter(|(_, i)| matches!(i, IngestItem::Unprocessed { .. })).collect();
            for chunk in unprocessed.chunks(CHUNK) {
                let mut insert: QueryBuilder<$db> =
                    QueryBuilder::new("INSERT INTO unprocessed_items (delivery_sha256, field, reason, raw) ");
                insert.push_values(chunk, |mut row, (sha, item)| {
                    if let IngestItem::Unprocessed { field, reason, raw } = item {
                        row.push_bind(*sha).push_bind(field).push_bind(reason).push_bind(raw);
                    }
                });
                insert.push(" ON CONFLICT DO NOTHING");
                insert.build().execute(&mut *conn).await?;
            }

            // 8a. Items to forward to subscribed apps (only new items carry one).
            let received_at = deliveries.iter().map(|d| d.received_at.unix_seconds()).max().unwrap_or(0);
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

            // 8b. Media to download.
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

            // 8. Outbox messages whose statuses say Meta accepted them (see `outbox`).
            let mut reconciled: Vec<(i64, &str, &str, i64)> = items
                .iter()
                .filter_map(|(_, item)| match item {
                    IngestItem::Status { outbox_id: Some(id), message_id, number, timestamp, .. } => {
                        Some((*id, message_id.as_str(), number.phone_number_id.as_str(), timestamp.unix_seconds()))
                    }
                    _ => None,
                })
                .collect();
            reconciled.sort();
            reconciled.dedup_by_key(|r| r.0);
            for (id, wamid, number, at) in reconciled {
                sqlx::query(crate::outbox::RECONCILE_FROM_STATUS)
                    .bind(id)
                    .bind(wamid)
                    .bind(number)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
            }

            // 9. Template changes: rare, and each may depend on the one before it (a
            // status, then the category of the same template), so one at a time.
            for (_, item) in items.iter() {
                if let IngestItem::TemplateChange(change) = item {
                    crate::templates::apply_change_postgres(&mut *conn, change).await?;
                }
            }
            Ok(report)
        }
    };
}

pub(crate) use define_batch_ingest;

#[cfg(test)]
mod tests {
    use super::windows_opened;

    const DAY: i64 = 86_400;

    #[test]
    fn each_new_message_is_judged_against_the_one_before_it() {
        let t = 1_790_000_000;
        // No history: the earliest opens; one a minute later does not; one a day after
        // that one opens again.
        assert_eq!(
            windows_opened(None, vec![(t + 60 + DAY, "c"), (t, "a"), (t + 60, "b")]),
            ["a", "c"]
        );
        // Judged against the latest before it, not the first: `b` kept the window open.
        assert_eq!(
            windows_opened(None, vec![(t, "a"), (t + DAY - 1, "b"), (t + DAY, "c")]),
            ["a"]
        );
        // A window still open at the first new message: nothing opens.
        assert!(windows_opened(Some(t), vec![(t + DAY - 1, "x")]).is_empty());
        // Closed by then, to the second.
        assert_eq!(windows_opened(Some(t), vec![(t + DAY, "y")]), ["y"]);
        // A late webhook for an older message opens nothing now.
        assert!(windows_opened(Some(t), vec![(t - 10, "late")]).is_empty());
    }
}
