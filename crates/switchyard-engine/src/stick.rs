//! `stick-table` with `stick` rules: a key (the client address, or in HTTP a cookie, header
//! or parameter) goes back to the server it was sent to before, while that server is usable,
//! as HAProxy's stick tables do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchyard_config as config;

/// What a table is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StickKey {
    Ip(IpAddr),
    Text(Box<str>),
}

impl StickKey {
    /// A string key, cut to the table's `len` (at a character boundary).
    pub fn text(value: &str, len: usize) -> StickKey {
        let mut end = value.len().min(len);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        StickKey::Text(value[..end].into())
    }
}

#[derive(Debug)]
pub struct StickTable {
    pub settings: config::StickTable,
    /// The rules of the section (`stick on|match|store-request|store-response`).
    pub rules: config::Stick,
    entries: Mutex<HashMap<StickKey, Entry>>,
}

#[derive(Debug)]
struct Entry {
    server: String,
    used: Instant,
}

impl StickTable {
    pub fn new(rules: config::Stick) -> StickTable {
        StickTable {
            settings: rules.table,
            rules,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<StickKey, Entry>> {
        crate::lock(&self.entries)
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        self.settings
            .expire
            .is_some_and(|expire| now.duration_since(entry.used) > expire)
    }

    /// The server `key` sticks to, if any (a match refreshes the entry).
    pub fn lookup(&self, key: &StickKey) -> Option<String> {
        let now = Instant::now();
        let mut entries = self.entries();
        let entry = entries.get_mut(key)?;
        if self.expired(entry, now) {
            entries.remove(key);
            return None;
        }
        entry.used = now;
        Some(entry.server.clone())
    }

    /// Records that `client` went to `server`; when full, expired entries and then the least
    /// recently used ones make room.
    pub fn store(&self, key: &StickKey, server: &str) {
        let now = Instant::now();
        let mut entries = self.entries();
        if let Some(entry) = entries.get_mut(key) {
            if entry.server != server {
                entry.server = server.to_string();
            }
            entry.used = now;
            return;
        }
        let limit = usize::try_from(self.settings.size).unwrap_or(usize::MAX);
        if entries.len() >= limit {
            self.make_room(&mut entries, limit, now);
        }
        entries.insert(
            key.clone(),
            Entry {
                server: server.to_string(),
                used: now,
            },
        );
    }

    /// Evicts in batches (a sixteenth of the table at least), so a full table costs one scan
    /// per many new clients rather than one per client.
    fn make_room(&self, entries: &mut HashMap<StickKey, Entry>, limit: usize, now: Instant) {
        entries.retain(|_, e| !self.expired(e, now));
        if entries.len() < limit {
            return;
        }
        let evict = (limit / 16).max(1).min(entries.len());
        let mut ages: Vec<Instant> = entries.values().map(|e| e.used).collect();
        let (_, cutoff, _) = ages.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        let mut left = evict;
        entries.retain(|_, e| {
            if left > 0 && e.used <= cutoff {
                left -= 1;
                false
            } else {
                true
            }
        });
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long an entry lasts when the configuration says nothing (HAProxy keeps it until
/// evicted).
pub const NO_EXPIRY: Option<Duration> = None;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> StickKey {
        StickKey::Ip(IpAddr::from([10, 0, 0, last]))
    }

    fn table(size: u64, expire: Option<Duration>) -> StickTable {
        let settings = config::StickTable {
            kind: config::StickKind::Ip,
            size,
            expire,
            key_len: 32,
        };
        StickTable::new(config::Stick {
            table: settings,
            match_on: Some(config::StickSample::Src),
            store_request: Some(config::StickSample::Src),
            store_response_cookie: None,
        })
    }

    #[test]
    fn entries_are_matched_refreshed_and_the_least_recent_evicted() {
        let table = table(2, NO_EXPIRY);
        table.store(&ip(1), "s1");
        table.store(&ip(2), "s2");
        assert_eq!(table.lookup(&ip(1)).as_deref(), Some("s1"));
        // ip(2) is now the least recently used: it makes room for ip(3).
        table.store(&ip(3), "s3");
        assert_eq!(table.len(), 2);
        assert_eq!(table.lookup(&ip(2)), None);
        assert_eq!(table.lookup(&ip(3)).as_deref(), Some("s3"));
        table.store(&ip(1), "s2");
        assert_eq!(table.lookup(&ip(1)).as_deref(), Some("s2"));
    }

    #[test]
    fn text_keys_are_cut_at_the_table_length() {
        assert_eq!(StickKey::text("abcdef", 4), StickKey::Text("abcd".into()));
        // Never inside a character.
        assert_eq!(StickKey::text("ab\u{e9}", 3), StickKey::Text("ab".into()));
        assert_eq!(StickKey::text("ab", 32), StickKey::Text("ab".into()));
    }

    #[test]
    fn expired_entries_are_forgotten() {
        let table = table(10, Some(Duration::from_millis(20)));
        table.store(&ip(1), "s1");
        assert_eq!(table.lookup(&ip(1)).as_deref(), Some("s1"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(table.lookup(&ip(1)), None);
        assert!(table.is_empty());
    }
}
