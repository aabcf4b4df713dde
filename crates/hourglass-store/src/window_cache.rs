//! What window questions read, remembered in process: SQLite only, where this process is
//! the database's one writer and so knows every change.
//!
//! A window answer needs the contact's thread row and the count of its number's free-form
//! deliveries this month. Both change only when this process writes, and every write path
//! tells the cache what it touched *after* it commits. A reader that fetched a row from
//! the database only remembers it if no write was reported while it was reading (the
//! generation did not move), so a row read before a commit can never outlive that commit.
//! The cache is bounded: when full it starts over.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::model::{ServiceCount, ThreadRow};

/// Entries past which the thread cache starts over (about 250 bytes each).
const MAX_THREADS: usize = 200_000;

#[derive(Default)]
struct Threads {
    by_key: HashMap<(String, String), ThreadRow>,
    keys_of: HashMap<i64, Vec<(String, String)>>,
}

/// How many of `instants` (the earliest `cap` deliveries from `query.from` on, ascending)
/// fall before `query.before`: exact up to `cap`, which is all the pricing rules ask.
pub(crate) fn count_before(instants: &[i64], query: ServiceCount) -> u32 {
    let before = query.before.unix_seconds();
    (instants.partition_point(|d| *d < before) as u32).min(query.cap)
}

#[derive(Default)]
pub(crate) struct WindowCache {
    generation: AtomicU64,
    threads: RwLock<Threads>,
    /// Per number and counting window start: the earliest `cap` delivery instants of its
    /// free-form messages from `from` on, ascending. Counting those before an instant is
    /// exact up to `cap`, which is all the pricing rules ask.
    services: RwLock<HashMap<(String, i64, u32), Vec<i64>>>,
}

impl WindowCache {
    /// Read before fetching from the database; pass to the `remember_…` calls after.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn thread(&self, phone_number_id: &str, contact: &str) -> Option<ThreadRow> {
        let threads = self.threads.read().expect("window cache poisoned");
        threads
            .by_key
            .get(&(phone_number_id.to_owned(), contact.to_owned()))
            .cloned()
    }

    pub fn remember_thread(
        &self,
        phone_number_id: &str,
        contact: &str,
        row: &ThreadRow,
        read_at: u64,
    ) {
        let mut threads = self.threads.write().expect("window cache poisoned");
        if self.generation() != read_at {
            return;
        }
        if threads.by_key.len() >= MAX_THREADS {
            *threads = Threads::default();
        }
        let key = (phone_number_id.to_owned(), contact.to_owned());
        threads.keys_of.entry(row.id).or_default().push(key.clone());
        threads.by_key.insert(key, row.clone());
    }

    pub fn service_count(&self, phone_number_id: &str, query: ServiceCount) -> Option<u32> {
        let services = self.services.read().expect("window cache poisoned");
        let instants = services.get(&(
            phone_number_id.to_owned(),
            query.from.unix_seconds(),
            query.cap,
        ))?;
        Some(count_before(instants, query))
    }

    pub fn remember_services(
        &self,
        phone_number_id: &str,
        query: ServiceCount,
        instants: Vec<i64>,
        read_at: u64,
    ) {
        let mut services = self.services.write().expect("window cache poisoned");
        if self.generation() != read_at {
            return;
        }
        if services.len() >= 10_000 {
            services.clear();
        }
        services.insert(
            (
                phone_number_id.to_owned(),
                query.from.unix_seconds(),
                query.cap,
            ),
            instants,
        );
    }

    /// Called after a commit that changed these threads (or deleted them).
    pub fn forget_threads(&self, ids: &HashSet<i64>) {
        if ids.is_empty() {
            return;
        }
        let mut threads = self.threads.write().expect("window cache poisoned");
        self.generation.fetch_add(1, Ordering::AcqRel);
        for id in ids {
            if let Some(keys) = threads.keys_of.remove(id) {
                for key in keys {
                    threads.by_key.remove(&key);
                }
            }
        }
    }

    /// Called after a commit that may have changed a number's free-form deliveries.
    pub fn forget_services(&self, numbers: &HashSet<String>) {
        if numbers.is_empty() {
            return;
        }
        let mut services = self.services.write().expect("window cache poisoned");
        self.generation.fetch_add(1, Ordering::AcqRel);
        services.retain(|(number, _, _), _| !numbers.contains(number));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourglass_core::Instant;

    fn row(id: i64) -> ThreadRow {
        ThreadRow {
            id,
            phone_number_id: "1".into(),
            wa_id: Some("15550001".into()),
            user_id: None,
            profile_name: None,
            last_customer_at: Some(Instant::from_unix_seconds(100)),
            last_reaction_at: None,
            last_fep_signal_at: None,
        }
    }

    #[test]
    fn a_thread_is_remembered_until_a_commit_touches_it() {
        let cache = WindowCache::default();
        cache.remember_thread("1", "15550001", &row(7), cache.generation());
        assert_eq!(cache.thread("1", "15550001"), Some(row(7)));
        cache.forget_threads(&HashSet::from([8]));
        assert!(
            cache.thread("1", "15550001").is_some(),
            "another thread's commit"
        );
        cache.forget_threads(&HashSet::from([7]));
        assert_eq!(cache.thread("1", "15550001"), None);
    }

    #[test]
    fn a_row_read_before_a_commit_is_not_remembered_after_it() {
        let cache = WindowCache::default();
        let read_at = cache.generation();
        // A commit is reported while the reader is still reading.
        cache.forget_threads(&HashSet::from([99]));
        cache.remember_thread("1", "15550001", &row(7), read_at);
        assert_eq!(cache.thread("1", "15550001"), None);
    }

    #[test]
    fn service_counts_are_exact_up_to_the_cap() {
        let cache = WindowCache::default();
        let query = |before: i64| ServiceCount {
            from: Instant::from_unix_seconds(0),
            before: Instant::from_unix_seconds(before),
            cap: 3,
        };
        cache.remember_services("1", query(0), vec![10, 20, 30], cache.generation());
        assert_eq!(cache.service_count("1", query(25)), Some(2));
        assert_eq!(cache.service_count("1", query(10)), Some(0));
        assert_eq!(cache.service_count("1", query(1_000)), Some(3));
        cache.forget_services(&HashSet::from(["1".to_owned()]));
        assert_eq!(cache.service_count("1", query(25)), None);
    }
}
