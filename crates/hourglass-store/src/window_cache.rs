//! What window questions read, remembered in process.
//!
//! A window answer needs the contact's thread row and the count of its number's free-form
//! deliveries this month. Both change only when something writes, and every write path
//! tells the cache what it touched *after* it commits. A reader that fetched a row from
//! the database only remembers it if no write was reported while it was reading (the
//! generation did not move), so a row read before a commit can never outlive that commit.
//! The cache is bounded: when full it starts over.
//!
//! On SQLite this process is the database's one writer, so it knows every change. On
//! PostgreSQL other processes write too: each commit that touches threads or deliveries
//! also sends a `NOTIFY` on [`CHANGES_CHANNEL`] naming them ([`Touched::notification`]),
//! delivered by PostgreSQL only once the transaction commits; every process listens
//! and forgets them. While a process is not listening (starting, or its listening
//! connection lost) its cache is switched off and emptied, so it never answers from a
//! cache that may have missed a change. An answer may lag another process's commit by
//! the time the notification takes to arrive (milliseconds); the send gate never reads
//! this cache.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// The PostgreSQL channel on which commits name what they changed.
pub(crate) const CHANGES_CHANNEL: &str = "hourglass_window_changes";

/// Longest notification payload sent (PostgreSQL allows 8,000 bytes); a commit that
/// touched more says "everything".
const MAX_PAYLOAD: usize = 7_000;

/// What a write changed, for window caches: told after the commit.
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct Touched {
    pub threads: HashSet<i64>,
    /// Numbers whose business messages got new statuses or sends (their free-form
    /// delivery count may have moved).
    pub numbers: HashSet<String>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty() && self.numbers.is_empty()
    }

    /// The payload that tells other processes: `t:1,2;n:106540352242922`, or `*` (forget
    /// everything) when it would be too long or a number id holds a separator.
    pub fn notification(&self) -> String {
        if self.numbers.iter().any(|n| n.contains([',', ';'])) {
            return "*".into();
        }
        let threads: Vec<String> = self.threads.iter().map(i64::to_string).collect();
        let numbers: Vec<&str> = self.numbers.iter().map(String::as_str).collect();
        let payload = format!("t:{};n:{}", threads.join(","), numbers.join(","));
        if payload.len() > MAX_PAYLOAD {
            "*".into()
        } else {
            payload
        }
    }

    /// Reads a notification; `None` means "forget everything" (also for a payload this
    /// version does not understand).
    pub fn from_notification(payload: &str) -> Option<Touched> {
        let (threads, numbers) = payload.strip_prefix("t:")?.split_once(";n:")?;
        let mut touched = Touched::default();
        for id in threads.split(',').filter(|s| !s.is_empty()) {
            touched.threads.insert(id.parse().ok()?);
        }
        touched.numbers.extend(
            numbers
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        Some(touched)
    }
}

pub(crate) struct WindowCache {
    /// Off while the process cannot be sure to hear of every change (PostgreSQL, not
    /// listening): nothing is answered from the cache, nothing is remembered.
    enabled: AtomicBool,
    generation: AtomicU64,
    threads: RwLock<Threads>,
    /// Per number and counting window start: the earliest `cap` delivery instants of its
    /// free-form messages from `from` on, ascending. Counting those before an instant is
    /// exact up to `cap`, which is all the pricing rules ask.
    services: RwLock<HashMap<(String, i64, u32), Vec<i64>>>,
}

impl WindowCache {
    pub fn new(enabled: bool) -> Self {
        WindowCache {
            enabled: AtomicBool::new(enabled),
            generation: AtomicU64::new(0),
            threads: RwLock::default(),
            services: RwLock::default(),
        }
    }

    /// Switches the cache on or off; either way it starts empty, and a read under way
    /// remembers nothing.
    pub fn set_enabled(&self, enabled: bool) {
        let mut threads = self.threads.write().expect("window cache poisoned");
        let mut services = self.services.write().expect("window cache poisoned");
        self.enabled.store(enabled, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        *threads = Threads::default();
        services.clear();
    }

    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Forgets what a commit touched.
    pub fn forget(&self, touched: &Touched) {
        self.forget_threads(&touched.threads);
        self.forget_services(&touched.numbers);
    }

    /// A window answer's thread and free-form delivery count: from the cache, or read
    /// through `read` and remembered. `read(true)` must also return the earliest
    /// `count.cap` delivery instants from `count.from` on (ascending); `read(false)` may
    /// leave them empty, the count being cached already.
    pub async fn thread_and_services<F, Fut>(
        &self,
        phone_number_id: &str,
        contact: &str,
        count: ServiceCount,
        read: F,
    ) -> Result<Option<(ThreadRow, u32)>, crate::StoreError>
    where
        F: FnOnce(bool) -> Fut,
        Fut: std::future::Future<Output = Result<Option<(ThreadRow, Vec<i64>)>, crate::StoreError>>,
    {
        let read_at = self.generation();
        let cached_count = if count.cap == 0 {
            Some(0)
        } else {
            self.service_count(phone_number_id, count)
        };
        if let (Some(thread), Some(services)) =
            (self.thread(phone_number_id, contact), cached_count)
        {
            return Ok(Some((thread, services)));
        }
        let Some((thread, instants)) = read(cached_count.is_none()).await? else {
            return Ok(None);
        };
        self.remember_thread(phone_number_id, contact, &thread, read_at);
        let services = match cached_count {
            Some(services) => services,
            None => {
                let services = count_before(&instants, count);
                self.remember_services(phone_number_id, count, instants, read_at);
                services
            }
        };
        Ok(Some((thread, services)))
    }

    /// Read before fetching from the database; pass to the `remember_…` calls after.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn thread(&self, phone_number_id: &str, contact: &str) -> Option<ThreadRow> {
        if !self.enabled() {
            return None;
        }
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
        if self.generation() != read_at || !self.enabled() {
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
        if !self.enabled() {
            return None;
        }
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
        if self.generation() != read_at || !self.enabled() {
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
        let cache = WindowCache::new(true);
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
        let cache = WindowCache::new(true);
        let read_at = cache.generation();
        // A commit is reported while the reader is still reading.
        cache.forget_threads(&HashSet::from([99]));
        cache.remember_thread("1", "15550001", &row(7), read_at);
        assert_eq!(cache.thread("1", "15550001"), None);
    }

    #[test]
    fn service_counts_are_exact_up_to_the_cap() {
        let cache = WindowCache::new(true);
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

#[cfg(test)]
mod notification_tests {
    use super::*;

    #[test]
    fn a_notification_names_what_a_commit_touched_or_says_everything() {
        let mut touched = Touched::default();
        touched.threads.extend([7, 12]);
        touched.numbers.insert("106540352242922".into());
        let read = Touched::from_notification(&touched.notification()).unwrap();
        assert_eq!(read, touched);
        assert_eq!(
            Touched::from_notification(&Touched::default().notification()),
            Some(Touched::default())
        );
        let mut huge = Touched::default();
        huge.threads.extend(0..2_000);
        assert_eq!(huge.notification(), "*");
        assert_eq!(Touched::from_notification("*"), None);
        assert_eq!(
            Touched::from_notification("t:x;n:"),
            None,
            "unreadable: forget all"
        );
    }

    #[test]
    fn a_switched_off_cache_answers_and_remembers_nothing() {
        let cache = WindowCache::new(false);
        let row = ThreadRow {
            id: 1,
            phone_number_id: "1".into(),
            wa_id: Some("15550001".into()),
            user_id: None,
            profile_name: None,
            last_customer_at: None,
            last_reaction_at: None,
            last_fep_signal_at: None,
        };
        cache.remember_thread("1", "15550001", &row, cache.generation());
        assert_eq!(cache.thread("1", "15550001"), None);
        cache.set_enabled(true);
        cache.remember_thread("1", "15550001", &row, cache.generation());
        assert_eq!(cache.thread("1", "15550001"), Some(row.clone()));
        cache.set_enabled(false);
        assert_eq!(
            cache.thread("1", "15550001"),
            None,
            "emptied when switched off"
        );
    }
}
