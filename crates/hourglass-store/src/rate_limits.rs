//! Token buckets in the database, shared by every process: the outbox takes one token
//! from each bucket a send needs (the number's throughput, the pair's limit) in one
//! transaction, or learns how long to wait.

/// One bucket a send needs a token from.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub key: String,
    /// Tokens it holds when full: the burst.
    pub capacity: f64,
    /// Tokens added per second.
    pub per_second: f64,
}

/// Whether a send may go now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Admission {
    Granted,
    /// Not before this many milliseconds from now.
    Wait(u64),
}

/// Takes a token, refilling first; a new bucket starts full. `$1` key, `$2` capacity,
/// `$3` now (ms), `$4` tokens per second. Returns a row only when a token was taken.
pub(crate) fn take_sql(postgres: bool) -> String {
    let least = if postgres { "LEAST" } else { "MIN" };
    format!(
        "INSERT INTO rate_buckets (key, tokens, updated_ms) VALUES ($1, $2 - 1, $3)
         ON CONFLICT (key) DO UPDATE SET
           tokens = {least}($2, rate_buckets.tokens + ($3 - rate_buckets.updated_ms) * $4 / 1000.0) - 1,
           updated_ms = $3
         WHERE {least}($2, rate_buckets.tokens + ($3 - rate_buckets.updated_ms) * $4 / 1000.0) >= 1
         RETURNING tokens"
    )
}

/// The tokens a bucket holds now. `$1` key, `$2` capacity, `$3` now (ms), `$4` per second.
pub(crate) fn level_sql(postgres: bool) -> String {
    let least = if postgres { "LEAST" } else { "MIN" };
    format!(
        "SELECT {least}($2, tokens + ($3 - updated_ms) * $4 / 1000.0) FROM rate_buckets WHERE key = $1"
    )
}

/// Milliseconds until a bucket holding `level` tokens holds one.
pub(crate) fn wait_for_token(level: f64, per_second: f64) -> u64 {
    if level >= 1.0 || per_second <= 0.0 {
        return 0;
    }
    ((1.0 - level) * 1000.0 / per_second).ceil() as u64
}

macro_rules! define_rate_limits {
    ($db:ty, $postgres:expr) => {
        use crate::rate_limits::*;
        use crate::StoreError;

        pub(crate) struct RateLimits {
            pub pool: sqlx::Pool<$db>,
        }

        #[async_trait::async_trait]
        impl crate::RateLimits for RateLimits {
            async fn admit(
                &self,
                buckets: &[Bucket],
                now_ms: i64,
            ) -> Result<Admission, StoreError> {
                let mut tx = self.pool.begin().await?;
                for bucket in buckets {
                    let taken: Option<f64> = sqlx::query_scalar(&take_sql($postgres))
                        .bind(&bucket.key)
                        .bind(bucket.capacity)
                        .bind(now_ms)
                        .bind(bucket.per_second)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if taken.is_none() {
                        let level: f64 = sqlx::query_scalar(&level_sql($postgres))
                            .bind(&bucket.key)
                            .bind(bucket.capacity)
                            .bind(now_ms)
                            .bind(bucket.per_second)
                            .fetch_one(&mut *tx)
                            .await?;
                        tx.rollback().await?;
                        return Ok(Admission::Wait(
                            wait_for_token(level, bucket.per_second).max(1),
                        ));
                    }
                }
                tx.commit().await?;
                Ok(Admission::Granted)
            }
        }
    };
}

pub(crate) use define_rate_limits;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_the_time_to_refill_one_token() {
        assert_eq!(wait_for_token(0.5, 80.0), 7);
        assert_eq!(wait_for_token(0.0, 1.0 / 6.0), 6000);
        assert_eq!(wait_for_token(1.2, 80.0), 0);
    }
}
