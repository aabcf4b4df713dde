//! Which thread a contact's messages go to, remembered by the ingest writers so that a
//! known contact costs no thread lookup.
//!
//! A thread is found by the contact's `wa_id` first, then by its business-scoped
//! `user_id`; when a message names a key the thread lacks, the thread learns it, and
//! when the two keys had a thread each, they merge (see `resolve_thread` in both stores).
//! The cache answers only when none of that can happen: the thread found by the same
//! precedence already holds every key the message names (or, for the `user_id`, holds
//! another one, which the rules never overwrite). Anything else is a miss, resolved by
//! the database and remembered afterwards.
//!
//! What it remembers must be true of committed rows. So entries are learned *after* the
//! commit that made them true ([`Learned`], kept by the caller until then), and a thread
//! merged away is forgotten at once (forgetting is always safe: it only makes a miss).
//! On SQLite the writer thread is the only one that changes threads, which makes the
//! cache exact. On PostgreSQL other processes may merge a cached thread away; the
//! foreign key from `messages` to `threads` then refuses the batch, and the caller
//! empties the cache and runs it again.
//!
//! Bounded: past [`MAX_ENTRIES`] contacts it starts over (about 150 bytes each).

use std::collections::HashMap;

use crate::model::ContactKey;

/// Contacts remembered at most before the cache starts over.
pub(crate) const MAX_ENTRIES: usize = 200_000;

/// A thread's id and the keys it holds, as committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Learned {
    pub phone_number_id: String,
    pub thread_id: i64,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum KeyKind {
    WaId,
    UserId,
}

/// A thread as remembered: its id and the keys it holds.
#[derive(Clone)]
struct Known {
    id: i64,
    user_id: Option<String>,
}

#[derive(Default)]
pub(crate) struct ContactThreads {
    /// (number, kind of key, key) → the thread holding that key.
    by_key: HashMap<(String, KeyKind, String), Known>,
}

impl ContactThreads {
    /// The thread of `contact` on `phone_number_id`, if the cache can tell without the
    /// database (see the module's comment for when it can).
    pub fn thread_of(&self, phone_number_id: &str, contact: &ContactKey) -> Option<i64> {
        // The same precedence as the database lookup: by `wa_id` when the message names
        // one. A `wa_id` not remembered is a miss even if the `user_id` is, because the
        // database might hold a thread for that `wa_id`, which would win.
        let (kind, key) = match (&contact.wa_id, &contact.user_id) {
            (Some(wa_id), _) => (KeyKind::WaId, wa_id),
            (None, Some(user_id)) => (KeyKind::UserId, user_id),
            (None, None) => return None,
        };
        let known = self
            .by_key
            .get(&(phone_number_id.to_owned(), kind, key.clone()))?;
        // A thread without a `user_id` learns the one the message names, and may merge
        // with the thread that holds it: the database must do that.
        if known.user_id.is_none() && contact.user_id.is_some() {
            return None;
        }
        Some(known.id)
    }

    /// Remembers committed threads.
    pub fn learn(&mut self, learned: impl IntoIterator<Item = Learned>) {
        for thread in learned {
            if self.by_key.len() >= MAX_ENTRIES {
                self.by_key.clear();
            }
            let value = Known {
                id: thread.thread_id,
                user_id: thread.user_id.clone(),
            };
            for (kind, key) in [
                (KeyKind::WaId, &thread.wa_id),
                (KeyKind::UserId, &thread.user_id),
            ] {
                if let Some(key) = key {
                    self.by_key.insert(
                        (thread.phone_number_id.clone(), kind, key.clone()),
                        value.clone(),
                    );
                }
            }
        }
    }

    /// Forgets a thread that is gone (merged into another) or whose keys changed.
    pub fn forget(&mut self, phone_number_id: &str, thread_id: i64) {
        // Merges are rare: a scan of the number's entries is simpler than a second index.
        self.by_key
            .retain(|(number, _, _), known| !(number == phone_number_id && known.id == thread_id));
    }

    pub fn clear(&mut self) {
        self.by_key.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(wa_id: Option<&str>, user_id: Option<&str>) -> ContactKey {
        ContactKey {
            wa_id: wa_id.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
        }
    }

    fn learned(id: i64, wa_id: Option<&str>, user_id: Option<&str>) -> Learned {
        Learned {
            phone_number_id: "N".into(),
            thread_id: id,
            wa_id: wa_id.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_thread_holding_every_key_the_message_names_is_answered() {
        let mut cache = ContactThreads::default();
        cache.learn([learned(7, Some("W"), Some("U"))]);
        assert_eq!(cache.thread_of("N", &key(Some("W"), Some("U"))), Some(7));
        assert_eq!(cache.thread_of("N", &key(Some("W"), None)), Some(7));
        assert_eq!(cache.thread_of("N", &key(None, Some("U"))), Some(7));
        // Another number's contact with the same keys is another thread.
        assert_eq!(cache.thread_of("M", &key(Some("W"), None)), None);
        // The rules keep a thread's user_id: a message naming another one still goes
        // to the thread found by wa_id.
        assert_eq!(cache.thread_of("N", &key(Some("W"), Some("U2"))), Some(7));
    }

    #[test]
    fn whatever_the_database_must_decide_is_a_miss() {
        let mut cache = ContactThreads::default();
        cache.learn([learned(1, Some("W"), None), learned(2, None, Some("U"))]);
        // Thread 1 would learn U and merge with thread 2.
        assert_eq!(cache.thread_of("N", &key(Some("W"), Some("U"))), None);
        // A wa_id not remembered: the database may hold a thread for it, which wins
        // over the one found by user_id.
        assert_eq!(cache.thread_of("N", &key(Some("W2"), Some("U"))), None);
        assert_eq!(cache.thread_of("N", &key(None, None)), None);
        // By user_id alone, thread 2 is the answer.
        assert_eq!(cache.thread_of("N", &key(None, Some("U"))), Some(2));
    }

    #[test]
    fn a_forgotten_thread_is_a_miss_and_the_cache_is_bounded() {
        let mut cache = ContactThreads::default();
        cache.learn([
            learned(1, Some("W"), Some("U")),
            learned(2, Some("X"), None),
        ]);
        cache.forget("N", 1);
        assert_eq!(cache.thread_of("N", &key(Some("W"), None)), None);
        assert_eq!(cache.thread_of("N", &key(None, Some("U"))), None);
        assert_eq!(cache.thread_of("N", &key(Some("X"), None)), Some(2));
        cache.learn((0..MAX_ENTRIES as i64 + 10).map(|i| learned(i, Some(&format!("w{i}")), None)));
        assert!(cache.len() <= MAX_ENTRIES);
    }
}
