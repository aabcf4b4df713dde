//! Media rows: written by the ingest writers with their message, claimed by the media
//! worker with a lease, finished when the bytes are on disk (or Meta says they are gone).

use hourglass_core::Instant;

/// `$1` media id, `$2` number, `$3` message id, `$4` mime type, `$5` sha256, `$6` now.
pub(crate) const INSERT_MEDIA: &str = "INSERT INTO media (media_id, phone_number_id, wamid, mime_type, sha256, state, attempts, next_attempt_at, created_at)
     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) ON CONFLICT (media_id) DO NOTHING";

pub(crate) const MEDIA_COLUMNS: &str = "media_id, phone_number_id, wamid, mime_type, sha256, state, attempts, path, size, error, created_at";

pub(crate) fn claim_sql(postgres: bool) -> String {
    format!(
        "UPDATE media SET attempts = attempts + 1, lease_until = $1 + $2
          WHERE media_id IN (SELECT media_id FROM media
                              WHERE state = 'pending' AND next_attempt_at <= $1
                                AND (lease_until IS NULL OR lease_until <= $1)
                              ORDER BY next_attempt_at LIMIT $3{})
          RETURNING {MEDIA_COLUMNS}",
        if postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    )
}

/// A medium a customer sent, as the webhook described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRef {
    pub id: String,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRow {
    pub media_id: String,
    pub phone_number_id: String,
    pub wamid: Option<String>,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    /// `pending`, `stored` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub path: Option<String>,
    pub size: Option<i64>,
    pub error: Option<String>,
    pub created_at: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaOutcome {
    Stored {
        path: String,
        size: i64,
        mime_type: Option<String>,
    },
    Retry {
        next_attempt_at: Instant,
        error: String,
    },
    Failed {
        error: String,
    },
}

macro_rules! define_media {
    ($db:ty, $postgres:expr) => {
        use hourglass_core::Instant;
        use sqlx::Row;

        use crate::media::*;
        use crate::StoreError;

        pub(crate) struct Media {
            pub pool: sqlx::Pool<$db>,
            pub read: sqlx::Pool<$db>,
        }

        fn media_from_row(row: &<$db as sqlx::Database>::Row) -> Result<MediaRow, sqlx::Error> {
            Ok(MediaRow {
                media_id: row.try_get("media_id")?,
                phone_number_id: row.try_get("phone_number_id")?,
                wamid: row.try_get("wamid")?,
                mime_type: row.try_get("mime_type")?,
                sha256: row.try_get("sha256")?,
                state: row.try_get("state")?,
                attempts: row.try_get("attempts")?,
                path: row.try_get("path")?,
                size: row.try_get("size")?,
                error: row.try_get("error")?,
                created_at: Instant::from_unix_seconds(row.try_get("created_at")?),
            })
        }

        #[async_trait::async_trait]
        impl crate::MediaStore for Media {
            async fn claim_media(
                &self,
                now: Instant,
                lease_seconds: i64,
                limit: u32,
            ) -> Result<Vec<MediaRow>, StoreError> {
                let rows = sqlx::query(&claim_sql($postgres))
                    .bind(now.unix_seconds())
                    .bind(lease_seconds)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map(media_from_row).collect::<Result<_, _>>()?)
            }

            async fn finish_media(
                &self,
                media_id: &str,
                attempt: i64,
                outcome: &MediaOutcome,
            ) -> Result<bool, StoreError> {
                let query = match outcome {
                    MediaOutcome::Stored { path, size, mime_type } => sqlx::query(
                        "UPDATE media SET state = 'stored', path = $3, size = $4,
                                          mime_type = COALESCE($5, mime_type), lease_until = NULL, error = NULL
                         WHERE media_id = $1 AND attempts = $2 AND state = 'pending'",
                    )
                    .bind(media_id)
                    .bind(attempt)
                    .bind(path)
                    .bind(*size)
                    .bind(mime_type),
                    MediaOutcome::Retry { next_attempt_at, error } => sqlx::query(
                        "UPDATE media SET next_attempt_at = $3, error = $4, lease_until = NULL
                         WHERE media_id = $1 AND attempts = $2 AND state = 'pending'",
                    )
                    .bind(media_id)
                    .bind(attempt)
                    .bind(next_attempt_at.unix_seconds())
                    .bind(error),
                    MediaOutcome::Failed { error } => sqlx::query(
                        "UPDATE media SET state = 'failed', error = $3, lease_until = NULL
                         WHERE media_id = $1 AND attempts = $2 AND state = 'pending'",
                    )
                    .bind(media_id)
                    .bind(attempt)
                    .bind(error),
                };
                Ok(query.execute(&self.pool).await?.rows_affected() == 1)
            }

            async fn media(&self, media_id: &str) -> Result<Option<MediaRow>, StoreError> {
                Ok(sqlx::query(&format!("SELECT {MEDIA_COLUMNS} FROM media WHERE media_id = $1"))
                    .bind(media_id)
                    .fetch_optional(&self.read)
                    .await?
                    .as_ref()
                    .map(media_from_row)
                    .transpose()?)
            }
        }
    };
}

pub(crate) use define_media;
