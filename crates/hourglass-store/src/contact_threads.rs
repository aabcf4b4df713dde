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
//! Bounded: past [`MAX_ENTRIES`] keys it starts over.

use std::collections::HashMap;

use crate::model::ContactKey;

/// Keys (a `wa_id` or a `user_id`) remembered at most before the cache starts over:
/// about 100 bytes each, so some 10 MiB.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// A thread's id and the keys it holds, as committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Learned {
    pub phone_number_id: String,
    pub thread_id: i64,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
}

/// A thread as remembered: its id and the `user_id` it holds.
#[derive(Clone)]
struct Known {
    id: i64,
    user_id: Option<String>,
}

/// One business number's contacts: by each kind of key (looked up by `&str`, so a lookup
/// allocates nothing).
#[derive(Default)]
struct NumberContacts {
    by_wa_id: HashMap<String, Known>,
    by_user_id: HashMap<String, Known>,
}

#[derive(Default)]
pub(crate) struct ContactThreads {
    numbers: HashMap<String, NumberContacts>,
    entries: usize,
}

impl ContactThreads {
    /// The thread of `contact` on `phone_number_id`, if the cache can tell without the
    /// database (see the module's comment for when it can).
    pub fn thread_of(&self, phone_number_id: &str, contact: &ContactKey) -> Option<i64> {
        let number = self.numbers.get(phone_number_id)?;
        // The same precedence as the database lookup: by `wa_id` when the message names
        // one. A `wa_id` not remembered is a miss even if the `user_id` is, because the
        // database might hold a thread for that `wa_id`, which would win.
        let known = match (&contact.wa_id, &contact.user_id) {
            (Some(wa_id), _) => number.by_wa_id.get(wa_id.as_str())?,
            (None, Some(user_id)) => number.by_user_id.get(user_id.as_str())?,
            (None, None) => return None,
        };
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
            if self.entries >= MAX_ENTRIES {
                self.clear();
            }
            let known = Known {
                id: thread.thread_id,
                user_id: thread.user_id.clone(),
            };
            let number = self.numbers.entry(thread.phone_number_id).or_default();
            if let Some(wa_id) = thread.wa_id {
                self.entries += usize::from(number.by_wa_id.insert(wa_id, known.clone()).is_none());
            }
            if let Some(user_id) = thread.user_id {
                self.entries += usize::from(number.by_user_id.insert(user_id, known).is_none());
            }
        }
    }

    /// Forgets a thread that is gone (merged into another) or whose keys changed.
    pub fn forget(&mut self, phone_number_id: &str, thread_id: i64) {
        // Merges are rare: a scan of the number's entries is simpler than a second index.
        if let Some(number) = self.numbers.get_mut(phone_number_id) {
            for map in [&mut number.by_wa_id, &mut number.by_user_id] {
                let before = map.len();
                map.retain(|_, known| known.id != thread_id);
                self.entries -= before - map.len();
            }
        }
    }

    pub fn clear(&mut self) {
        self.numbers.clear();
        self.entries = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
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
