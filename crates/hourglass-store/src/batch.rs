//! The planning of a batch of deliveries that does not depend on the database: which
//! contacts it names, which thread a contact key resolves to among those read, which new
//! customer messages open a window. (SQLite
//! applies a batch row by row on its writer thread, `sqlite_writer`; PostgreSQL in a few
//! set-based statements, `postgres_ingest`.)

use std::collections::{BTreeMap, HashSet};

use crate::model::*;

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
