//! The template registry: each WABA's templates as Meta last described them, and the
//! history of their status, category and quality.
//!
//! Three sources write it, and the newest word wins field by field: a sync (Meta's full
//! list at an instant), a creation or deletion through Hourglass, and Meta's template
//! webhooks, which arrive through the ingest writers inside the webhook's own transaction
//! (so a 200 to Meta means the change is recorded). Each field carries the instant it was
//! set, and a change older than that instant is kept in the history but does not undo
//! the newer value.
//!
//! The planning (what a sync or a save changes) is plain Rust; the SQL is the same text
//! for both databases (`$N` placeholders, which sqlx accepts for SQLite too), expanded
//! for each pool type by [`define_template_store!`].

use std::collections::HashMap;

use hourglass_core::Instant;

use crate::model::*;

/// Columns of `templates`, in the order [`template_from_row`] reads them.
pub(crate) const TEMPLATE_COLUMNS: &str = "waba_id, name, language, meta_template_id, category, status, status_reason, quality, definition, status_at, category_at, quality_at, updated_at";

/// Inserts a template, or updates it field by field: status, category and quality each
/// take the incoming value only when it is at least as new as the stored one (a NULL
/// incoming value keeps the stored one), so a sync and a webhook racing each other
/// cannot undo the newer word whichever commits last.
pub(crate) const UPSERT_TEMPLATE: &str = "INSERT INTO templates (waba_id, name, language, meta_template_id, category, status, status_reason, quality, definition, status_at, category_at, quality_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (waba_id, name, language) DO UPDATE SET
       meta_template_id = COALESCE(excluded.meta_template_id, templates.meta_template_id),
       definition = COALESCE(excluded.definition, templates.definition),
       status = CASE WHEN excluded.status IS NULL OR templates.status_at > excluded.status_at THEN templates.status ELSE excluded.status END,
       status_reason = CASE WHEN excluded.status IS NULL OR templates.status_at > excluded.status_at THEN templates.status_reason ELSE excluded.status_reason END,
       status_at = CASE WHEN excluded.status IS NULL OR templates.status_at > excluded.status_at THEN templates.status_at ELSE excluded.status_at END,
       category = CASE WHEN excluded.category IS NULL OR templates.category_at > excluded.category_at THEN templates.category ELSE excluded.category END,
       category_at = CASE WHEN excluded.category IS NULL OR templates.category_at > excluded.category_at THEN templates.category_at ELSE excluded.category_at END,
       quality = CASE WHEN excluded.quality IS NULL OR templates.quality_at > excluded.quality_at THEN templates.quality ELSE excluded.quality END,
       quality_at = CASE WHEN excluded.quality IS NULL OR templates.quality_at > excluded.quality_at THEN templates.quality_at ELSE excluded.quality_at END,
       updated_at = CASE WHEN templates.updated_at > excluded.updated_at THEN templates.updated_at ELSE excluded.updated_at END";

/// A creation's answer (`PENDING`, usually) fills status and category only where Meta
/// has not said anything yet: its review verdict may arrive, by webhook, before the
/// creation is recorded.
pub(crate) const UPSERT_CREATED_TEMPLATE: &str = "INSERT INTO templates (waba_id, name, language, meta_template_id, category, status, status_reason, quality, definition, status_at, category_at, quality_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (waba_id, name, language) DO UPDATE SET
       meta_template_id = COALESCE(excluded.meta_template_id, templates.meta_template_id),
       definition = COALESCE(excluded.definition, templates.definition),
       status = COALESCE(templates.status, excluded.status),
       status_reason = CASE WHEN templates.status IS NULL THEN excluded.status_reason ELSE templates.status_reason END,
       status_at = COALESCE(templates.status_at, excluded.status_at),
       category = COALESCE(templates.category, excluded.category),
       category_at = COALESCE(templates.category_at, excluded.category_at),
       quality = COALESCE(templates.quality, excluded.quality),
       quality_at = COALESCE(templates.quality_at, excluded.quality_at),
       updated_at = excluded.updated_at";

/// Removes a template a sync no longer found, unless something told us about it after
/// the list was taken (`$4`).
pub(crate) const DELETE_UNLISTED_TEMPLATE: &str =
    "DELETE FROM templates WHERE waba_id = $1 AND name = $2 AND language = $3 AND updated_at <= $4";

pub(crate) const INSERT_TEMPLATE_EVENT: &str = "INSERT INTO template_events (waba_id, meta_template_id, name, language, kind, value, previous, reason, at, source)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING";

/// A webhook's change to a template named by name and language (both present): creates the row when
/// Meta's webhook is the first word about it, and leaves a newer value alone.
/// `$1` waba, `$2` name, `$3` language, `$4` Meta's id ('' if unknown), `$5` value, then
/// for a status `$6` reason and `$7` instant, else `$6` instant.
fn upsert_change_by_name(kind: TemplateChangeKind) -> &'static str {
    match kind {
        TemplateChangeKind::Status => {
            "INSERT INTO templates (waba_id, name, language, meta_template_id, status, status_reason, status_at, updated_at)
             VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6, $7, $7)
             ON CONFLICT (waba_id, name, language) DO UPDATE SET
               status = excluded.status, status_reason = excluded.status_reason, status_at = excluded.status_at,
               meta_template_id = COALESCE(templates.meta_template_id, excluded.meta_template_id),
               updated_at = excluded.updated_at
             WHERE templates.status_at IS NULL OR templates.status_at <= excluded.status_at"
        }
        TemplateChangeKind::Category => {
            "INSERT INTO templates (waba_id, name, language, meta_template_id, category, category_at, updated_at)
             VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6, $6)
             ON CONFLICT (waba_id, name, language) DO UPDATE SET
               category = excluded.category, category_at = excluded.category_at,
               meta_template_id = COALESCE(templates.meta_template_id, excluded.meta_template_id),
               updated_at = excluded.updated_at
             WHERE templates.category_at IS NULL OR templates.category_at <= excluded.category_at"
        }
        TemplateChangeKind::Quality => {
            "INSERT INTO templates (waba_id, name, language, meta_template_id, quality, quality_at, updated_at)
             VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6, $6)
             ON CONFLICT (waba_id, name, language) DO UPDATE SET
               quality = excluded.quality, quality_at = excluded.quality_at,
               meta_template_id = COALESCE(templates.meta_template_id, excluded.meta_template_id),
               updated_at = excluded.updated_at
             WHERE templates.quality_at IS NULL OR templates.quality_at <= excluded.quality_at"
        }
    }
}

/// A webhook's change to a template known only by Meta's id: updates a row that exists.
/// `$1` waba, `$2` Meta's id, `$3` value, then for a status `$4` reason and `$5` instant,
/// else `$4` instant.
fn update_change_by_id(kind: TemplateChangeKind) -> &'static str {
    match kind {
        TemplateChangeKind::Status => {
            "UPDATE templates SET status = $3, status_reason = $4, status_at = $5, updated_at = $5
             WHERE waba_id = $1 AND meta_template_id = $2 AND (status_at IS NULL OR status_at <= $5)"
        }
        TemplateChangeKind::Category => {
            "UPDATE templates SET category = $3, category_at = $4, updated_at = $4
             WHERE waba_id = $1 AND meta_template_id = $2 AND (category_at IS NULL OR category_at <= $4)"
        }
        TemplateChangeKind::Quality => {
            "UPDATE templates SET quality = $3, quality_at = $4, updated_at = $4
             WHERE waba_id = $1 AND meta_template_id = $2 AND (quality_at IS NULL OR quality_at <= $4)"
        }
    }
}

/// The columns of a `template_events` row for a change, as bound by
/// [`INSERT_TEMPLATE_EVENT`].
pub(crate) fn event_key(change: &TemplateChange) -> (&str, &str, &str) {
    (
        change.meta_template_id.as_deref().unwrap_or(""),
        change.name.as_deref().unwrap_or(""),
        change.language.as_deref().unwrap_or(""),
    )
}

use crate::outbox::numbered_for_rusqlite;

/// Applies a webhook's template change inside the SQLite writer's transaction (with the
/// rest of its webhook).
pub(crate) fn apply_change_sqlite(
    tx: &rusqlite::Connection,
    change: &TemplateChange,
) -> rusqlite::Result<bool> {
    use rusqlite::params;
    let (id, name, language) = event_key(change);
    let at = change.at.unix_seconds();
    let new = tx
        .prepare_cached(&numbered_for_rusqlite(INSERT_TEMPLATE_EVENT))?
        .execute(params![
            change.waba_id,
            id,
            name,
            language,
            change.kind.as_str(),
            change.value,
            change.previous,
            change.reason,
            at,
            change.source.as_str(),
        ])?;
    if new == 0 {
        return Ok(false);
    }
    let is_status = change.kind == TemplateChangeKind::Status;
    if !name.is_empty() && !language.is_empty() {
        let mut statement =
            tx.prepare_cached(&numbered_for_rusqlite(upsert_change_by_name(change.kind)))?;
        if is_status {
            statement.execute(params![
                change.waba_id,
                name,
                language,
                id,
                change.value,
                change.reason,
                at
            ])?;
        } else {
            statement.execute(params![
                change.waba_id,
                name,
                language,
                id,
                change.value,
                at
            ])?;
        }
    } else if !id.is_empty() {
        let mut statement =
            tx.prepare_cached(&numbered_for_rusqlite(update_change_by_id(change.kind)))?;
        if is_status {
            statement.execute(params![change.waba_id, id, change.value, change.reason, at])?;
        } else {
            statement.execute(params![change.waba_id, id, change.value, at])?;
        }
    }
    Ok(true)
}

/// Applies a webhook's template change inside a PostgreSQL ingest transaction.
pub(crate) async fn apply_change_postgres(
    conn: &mut sqlx::PgConnection,
    change: &TemplateChange,
) -> Result<bool, sqlx::Error> {
    let (id, name, language) = event_key(change);
    let at = change.at.unix_seconds();
    let new = sqlx::query(INSERT_TEMPLATE_EVENT)
        .bind(&change.waba_id)
        .bind(id)
        .bind(name)
        .bind(language)
        .bind(change.kind.as_str())
        .bind(&change.value)
        .bind(&change.previous)
        .bind(&change.reason)
        .bind(at)
        .bind(change.source.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if new == 0 {
        return Ok(false);
    }
    let reason = (change.kind == TemplateChangeKind::Status).then_some(&change.reason);
    let query = if !name.is_empty() && !language.is_empty() {
        sqlx::query(upsert_change_by_name(change.kind))
            .bind(&change.waba_id)
            .bind(name)
            .bind(language)
            .bind(id)
            .bind(&change.value)
    } else if !id.is_empty() {
        sqlx::query(update_change_by_id(change.kind))
            .bind(&change.waba_id)
            .bind(id)
            .bind(&change.value)
    } else {
        return Ok(true);
    };
    let query = match reason {
        Some(reason) => query.bind(reason),
        None => query,
    };
    query.bind(at).execute(&mut *conn).await?;
    Ok(true)
}

/// What writing `incoming` over `existing` changes: the merged row (a field set after
/// `incoming` was observed stays) and the history entries for each difference.
pub(crate) fn merge_template(
    existing: Option<&TemplateRecord>,
    incoming: &TemplateRecord,
    source: TemplateChangeSource,
) -> (TemplateRecord, Vec<TemplateChange>) {
    let mut merged = incoming.clone();
    let mut changes = Vec::new();
    let observed = incoming.updated_at;
    let change = |kind, value: &Option<String>, previous: &Option<String>, reason| {
        value.as_ref().map(|value| TemplateChange {
            waba_id: incoming.waba_id.clone(),
            meta_template_id: incoming.meta_template_id.clone(),
            name: Some(incoming.name.clone()),
            language: Some(incoming.language.clone()),
            kind,
            value: value.clone(),
            previous: previous.clone(),
            reason,
            at: observed,
            source,
        })
    };
    let Some(existing) = existing else {
        changes.extend(change(
            TemplateChangeKind::Status,
            &incoming.status,
            &None,
            incoming.status_reason.clone(),
        ));
        changes.extend(change(
            TemplateChangeKind::Category,
            &incoming.category,
            &None,
            None,
        ));
        changes.extend(change(
            TemplateChangeKind::Quality,
            &incoming.quality,
            &None,
            None,
        ));
        return (merged, changes);
    };
    let newer = |at: Option<Instant>| at.is_some_and(|at| at > observed);
    if newer(existing.status_at) {
        merged.status = existing.status.clone();
        merged.status_reason = existing.status_reason.clone();
        merged.status_at = existing.status_at;
    } else if merged.status.is_some() && merged.status != existing.status {
        changes.extend(change(
            TemplateChangeKind::Status,
            &merged.status,
            &existing.status,
            merged.status_reason.clone(),
        ));
    } else if merged.status.is_none() {
        merged.status = existing.status.clone();
        merged.status_reason = existing.status_reason.clone();
        merged.status_at = existing.status_at;
    }
    if newer(existing.category_at) || merged.category.is_none() {
        merged.category = existing.category.clone();
        merged.category_at = existing.category_at;
    } else if merged.category != existing.category {
        changes.extend(change(
            TemplateChangeKind::Category,
            &merged.category,
            &existing.category,
            None,
        ));
    }
    if newer(existing.quality_at) || merged.quality.is_none() {
        merged.quality = existing.quality.clone();
        merged.quality_at = existing.quality_at;
    } else if merged.quality != existing.quality {
        changes.extend(change(
            TemplateChangeKind::Quality,
            &merged.quality,
            &existing.quality,
            None,
        ));
    }
    if merged.meta_template_id.is_none() {
        merged.meta_template_id = existing.meta_template_id.clone();
    }
    if merged.definition.is_none() {
        merged.definition = existing.definition.clone();
    }
    (merged, changes)
}

/// Whether two rows say the same about a template (their instants aside).
fn same_content(a: &TemplateRecord, b: &TemplateRecord) -> bool {
    (
        &a.meta_template_id,
        &a.status,
        &a.status_reason,
        &a.category,
        &a.quality,
        &a.definition,
    ) == (
        &b.meta_template_id,
        &b.status,
        &b.status_reason,
        &b.category,
        &b.quality,
        &b.definition,
    )
}

/// What a sync writes: every template Meta listed (merged with what the registry
/// knows), the ones Meta no longer lists, and the history entries.
pub(crate) struct SyncPlan {
    pub upserts: Vec<TemplateRecord>,
    pub removals: Vec<TemplateRecord>,
    pub changes: Vec<TemplateChange>,
    pub report: TemplateSyncReport,
}

pub(crate) fn plan_sync(
    existing: Vec<TemplateRecord>,
    listed: &[TemplateRecord],
    at: Instant,
) -> SyncPlan {
    let mut existing: HashMap<(String, String), TemplateRecord> = existing
        .into_iter()
        .map(|t| ((t.name.clone(), t.language.clone()), t))
        .collect();
    let mut plan = SyncPlan {
        upserts: Vec::new(),
        removals: Vec::new(),
        changes: Vec::new(),
        report: TemplateSyncReport::default(),
    };
    for incoming in listed {
        let before = existing.remove(&(incoming.name.clone(), incoming.language.clone()));
        let (merged, changes) =
            merge_template(before.as_ref(), incoming, TemplateChangeSource::Sync);
        match &before {
            None => plan.report.added += 1,
            Some(b) if !same_content(b, &merged) => plan.report.changed += 1,
            Some(_) => plan.report.unchanged += 1,
        }
        plan.changes.extend(changes);
        plan.upserts.push(merged);
    }
    // Meta's list leaves out deleted templates: what it no longer lists is gone, unless a
    // webhook or a creation told us about it after the list was taken.
    let mut gone: Vec<TemplateRecord> = existing
        .into_values()
        .filter(|t| t.updated_at <= at)
        .collect();
    gone.sort_by(|a, b| (&a.name, &a.language).cmp(&(&b.name, &b.language)));
    for t in &gone {
        plan.changes.push(TemplateChange {
            waba_id: t.waba_id.clone(),
            meta_template_id: t.meta_template_id.clone(),
            name: Some(t.name.clone()),
            language: Some(t.language.clone()),
            kind: TemplateChangeKind::Status,
            value: "DELETED".into(),
            previous: t.status.clone(),
            reason: Some("no longer in Meta's template list".into()),
            at,
            source: TemplateChangeSource::Sync,
        });
    }
    plan.report.removed = gone.len() as u32;
    plan.removals = gone;
    plan
}

/// Expands the registry's queries for one sqlx database type (`$db`).
macro_rules! define_template_store {
    ($db:ty) => {
        use hourglass_core::Instant;
        use sqlx::Row;

        use crate::model::*;
        use crate::templates::*;
        use crate::StoreError;

        fn template_from_row(row: &<$db as sqlx::Database>::Row) -> Result<TemplateRecord, sqlx::Error> {
            let at = |v: Option<i64>| v.map(Instant::from_unix_seconds);
            Ok(TemplateRecord {
                waba_id: row.try_get("waba_id")?,
                name: row.try_get("name")?,
                language: row.try_get("language")?,
                meta_template_id: row.try_get("meta_template_id")?,
                category: row.try_get("category")?,
                status: row.try_get("status")?,
                status_reason: row.try_get("status_reason")?,
                quality: row.try_get("quality")?,
                definition: row.try_get("definition")?,
                status_at: at(row.try_get("status_at")?),
                category_at: at(row.try_get("category_at")?),
                quality_at: at(row.try_get("quality_at")?),
                updated_at: Instant::from_unix_seconds(row.try_get("updated_at")?),
            })
        }

        async fn upsert_template(
            conn: &mut <$db as sqlx::Database>::Connection,
            sql: &'static str,
            t: &TemplateRecord,
        ) -> Result<(), sqlx::Error> {
            let secs = |v: Option<Instant>| v.map(|i| i.unix_seconds());
            sqlx::query(sql)
                .bind(&t.waba_id)
                .bind(&t.name)
                .bind(&t.language)
                .bind(&t.meta_template_id)
                .bind(&t.category)
                .bind(&t.status)
                .bind(&t.status_reason)
                .bind(&t.quality)
                .bind(&t.definition)
                .bind(secs(t.status_at))
                .bind(secs(t.category_at))
                .bind(secs(t.quality_at))
                .bind(t.updated_at.unix_seconds())
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        async fn insert_event(
            conn: &mut <$db as sqlx::Database>::Connection,
            change: &TemplateChange,
        ) -> Result<(), sqlx::Error> {
            let (id, name, language) = event_key(change);
            sqlx::query(INSERT_TEMPLATE_EVENT)
                .bind(&change.waba_id)
                .bind(id)
                .bind(name)
                .bind(language)
                .bind(change.kind.as_str())
                .bind(&change.value)
                .bind(&change.previous)
                .bind(&change.reason)
                .bind(change.at.unix_seconds())
                .bind(change.source.as_str())
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        async fn load_templates(
            conn: &mut <$db as sqlx::Database>::Connection,
            waba_id: &str,
        ) -> Result<Vec<TemplateRecord>, sqlx::Error> {
            let rows = sqlx::query(&format!(
                "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE waba_id = $1 ORDER BY name, language"
            ))
            .bind(waba_id)
            .fetch_all(&mut *conn)
            .await?;
            rows.iter().map(template_from_row).collect()
        }

        async fn load_template(
            conn: &mut <$db as sqlx::Database>::Connection,
            waba_id: &str,
            name: &str,
            language: &str,
        ) -> Result<Option<TemplateRecord>, sqlx::Error> {
            sqlx::query(&format!(
                "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE waba_id = $1 AND name = $2 AND language = $3"
            ))
            .bind(waba_id)
            .bind(name)
            .bind(language)
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(template_from_row)
            .transpose()
        }

        /// The registry's queries over one pool for writes and one for reads (the same
        /// pool on PostgreSQL; SQLite's single writer and its readers).
        pub(crate) struct Registry {
            pub write: sqlx::Pool<$db>,
            pub read: sqlx::Pool<$db>,
        }

        #[async_trait::async_trait]
        impl crate::TemplateRegistry for Registry {
        async fn replace_templates(
            &self,
            waba_id: &str,
            listed: &[TemplateRecord],
            at: Instant,
        ) -> Result<TemplateSyncReport, StoreError> {
            // Read first, outside the transaction, which then only writes: the guarded
            // upserts keep whatever a concurrent webhook wrote that is newer, and a
            // write-only transaction never has to upgrade a stale SQLite snapshot.
            let existing = load_templates(&mut *self.write.acquire().await?, waba_id).await?;
            let plan = plan_sync(existing, listed, at);
            let mut tx = self.write.begin().await?;
            for t in &plan.upserts {
                upsert_template(&mut tx, UPSERT_TEMPLATE, t).await?;
            }
            for t in &plan.removals {
                sqlx::query(DELETE_UNLISTED_TEMPLATE)
                    .bind(&t.waba_id)
                    .bind(&t.name)
                    .bind(&t.language)
                    .bind(at.unix_seconds())
                    .execute(&mut *tx)
                    .await?;
            }
            for change in &plan.changes {
                insert_event(&mut tx, change).await?;
            }
            sqlx::query(
                "INSERT INTO template_syncs (waba_id, synced_at, templates) VALUES ($1, $2, $3)
                 ON CONFLICT (waba_id) DO UPDATE SET synced_at = excluded.synced_at, templates = excluded.templates",
            )
            .bind(waba_id)
            .bind(at.unix_seconds())
            .bind(listed.len() as i64)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(plan.report)
        }

        async fn save_template(
            &self,
            template: &TemplateRecord,
            source: TemplateChangeSource,
        ) -> Result<TemplateRecord, StoreError> {
            let existing = load_template(
                &mut *self.write.acquire().await?,
                &template.waba_id,
                &template.name,
                &template.language,
            )
            .await?;
            let (_, changes) = merge_template(existing.as_ref(), template, source);
            let sql = match source {
                TemplateChangeSource::Create => UPSERT_CREATED_TEMPLATE,
                _ => UPSERT_TEMPLATE,
            };
            let mut tx = self.write.begin().await?;
            upsert_template(&mut tx, sql, template).await?;
            for change in &changes {
                insert_event(&mut tx, change).await?;
            }
            tx.commit().await?;
            load_template(
                &mut *self.write.acquire().await?,
                &template.waba_id,
                &template.name,
                &template.language,
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("a template vanished as it was saved".into()))
        }

        async fn delete_templates(
            &self,
            waba_id: &str,
            name: &str,
            language: Option<&str>,
            at: Instant,
        ) -> Result<Vec<TemplateRecord>, StoreError> {
            let gone: Vec<TemplateRecord> = load_templates(&mut *self.write.acquire().await?, waba_id)
                .await?
                .into_iter()
                .filter(|t| t.name == name && language.is_none_or(|l| l == t.language))
                .collect();
            let mut tx = self.write.begin().await?;
            for t in &gone {
                sqlx::query("DELETE FROM templates WHERE waba_id = $1 AND name = $2 AND language = $3")
                    .bind(waba_id)
                    .bind(&t.name)
                    .bind(&t.language)
                    .execute(&mut *tx)
                    .await?;
                insert_event(
                    &mut tx,
                    &TemplateChange {
                        waba_id: waba_id.to_owned(),
                        meta_template_id: t.meta_template_id.clone(),
                        name: Some(t.name.clone()),
                        language: Some(t.language.clone()),
                        kind: TemplateChangeKind::Status,
                        value: "DELETED".into(),
                        previous: t.status.clone(),
                        reason: None,
                        at,
                        source: TemplateChangeSource::Delete,
                    },
                )
                .await?;
            }
            tx.commit().await?;
            Ok(gone)
        }

        async fn template(
            &self,
            waba_id: &str,
            name: &str,
            language: &str,
        ) -> Result<Option<TemplateRecord>, StoreError> {
            let mut conn = self.read.acquire().await?;
            Ok(load_template(&mut conn, waba_id, name, language).await?)
        }

        async fn templates(
            &self,
            waba_id: &str,
        ) -> Result<Vec<TemplateRecord>, StoreError> {
            let mut conn = self.read.acquire().await?;
            Ok(load_templates(&mut conn, waba_id).await?)
        }

        async fn template_history(
            &self,
            waba_id: &str,
            name: &str,
            language: &str,
        ) -> Result<Vec<TemplateChange>, StoreError> {
            // Changes Meta reported by id alone belong to the template holding that id.
            let rows = sqlx::query(
                "SELECT meta_template_id, name, language, kind, value, previous, reason, at, source
                   FROM template_events
                  WHERE waba_id = $1
                    AND ((name = $2 AND language = $3)
                         OR (name = '' AND meta_template_id <> '' AND meta_template_id IN
                               (SELECT meta_template_id FROM templates
                                 WHERE waba_id = $1 AND name = $2 AND language = $3)))
                  ORDER BY at, id",
            )
            .bind(waba_id)
            .bind(name)
            .bind(language)
            .fetch_all(&self.read)
            .await?;
            rows.iter()
                .map(|row| {
                    let text = |c: &str| -> Result<Option<String>, sqlx::Error> {
                        let v: String = row.try_get(c)?;
                        Ok((!v.is_empty()).then_some(v))
                    };
                    let kind: String = row.try_get("kind")?;
                    let source: String = row.try_get("source")?;
                    Ok(TemplateChange {
                        waba_id: waba_id.to_owned(),
                        meta_template_id: text("meta_template_id")?,
                        name: text("name")?,
                        language: text("language")?,
                        kind: TemplateChangeKind::parse(&kind).ok_or_else(|| {
                            StoreError::Corrupt(format!("template_events.kind `{kind}`"))
                        })?,
                        value: row.try_get("value")?,
                        previous: row.try_get("previous")?,
                        reason: row.try_get("reason")?,
                        at: Instant::from_unix_seconds(row.try_get("at")?),
                        source: TemplateChangeSource::parse(&source).ok_or_else(|| {
                            StoreError::Corrupt(format!("template_events.source `{source}`"))
                        })?,
                    })
                })
                .collect()
        }

        async fn synced_at(
            &self,
            waba_id: &str,
        ) -> Result<Option<Instant>, StoreError> {
            let at: Option<i64> = sqlx::query_scalar("SELECT synced_at FROM template_syncs WHERE waba_id = $1")
                .bind(waba_id)
                .fetch_optional(&self.read)
                .await?;
            Ok(at.map(Instant::from_unix_seconds))
        }

        async fn waba_ids(&self) -> Result<Vec<String>, StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT waba_id FROM business_numbers WHERE waba_id IS NOT NULL
                 UNION SELECT waba_id FROM templates
                 UNION SELECT waba_id FROM template_syncs
                 ORDER BY 1",
            )
            .fetch_all(&self.read)
            .await?)
        }
        }
    };
}

pub(crate) use define_template_store;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, status: &str, at: i64) -> TemplateRecord {
        TemplateRecord {
            waba_id: "waba".into(),
            name: name.into(),
            language: "en_US".into(),
            meta_template_id: Some(format!("id-{name}")),
            category: Some("MARKETING".into()),
            status: Some(status.into()),
            status_reason: None,
            quality: None,
            definition: Some("{}".into()),
            status_at: Some(Instant::from_unix_seconds(at)),
            category_at: Some(Instant::from_unix_seconds(at)),
            quality_at: None,
            updated_at: Instant::from_unix_seconds(at),
        }
    }

    #[test]
    fn a_sync_records_each_status_difference_and_what_meta_no_longer_lists() {
        let existing = vec![record("a", "PENDING", 100), record("b", "APPROVED", 100)];
        let plan = plan_sync(
            existing,
            &[record("a", "APPROVED", 200)],
            Instant::from_unix_seconds(200),
        );
        assert_eq!(
            plan.report,
            TemplateSyncReport {
                added: 0,
                changed: 1,
                removed: 1,
                unchanged: 0
            }
        );
        let statuses: Vec<(&str, &str)> = plan
            .changes
            .iter()
            .map(|c| (c.name.as_deref().unwrap(), c.value.as_str()))
            .collect();
        assert_eq!(statuses, [("a", "APPROVED"), ("b", "DELETED")]);
    }

    #[test]
    fn a_webhook_newer_than_the_sync_keeps_its_status() {
        let paused_later = record("a", "PAUSED", 300);
        let (merged, changes) = merge_template(
            Some(&paused_later),
            &record("a", "APPROVED", 200),
            TemplateChangeSource::Sync,
        );
        assert_eq!(merged.status.as_deref(), Some("PAUSED"));
        assert!(changes.is_empty());
    }
}
