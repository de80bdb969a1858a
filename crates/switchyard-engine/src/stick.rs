//! `stick-table type ip` with `stick on src`: a client goes back to the server it was sent to
//! before, while that server is usable, as HAProxy's source persistence does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchyard_config as config;

#[derive(Debug)]
pub struct StickTable {
    pub settings: config::StickTable,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug)]
struct Entry {
    server: String,
    used: Instant,
}

impl StickTable {
    pub fn new(settings: config::StickTable) -> StickTable {
        StickTable {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        self.settings
            .expire
            .is_some_and(|expire| now.duration_since(entry.used) > expire)
    }

    /// The server `client` sticks to, if any (a match refreshes the entry).
    pub fn lookup(&self, client: IpAddr) -> Option<String> {
        let now = Instant::now();
        let mut entries = self.entries();
        let entry = entries.get_mut(&client)?;
        if self.expired(entry, now) {
            entries.remove(&client);
            return None;
        }
        entry.used = now;
        Some(entry.server.clone())
    }

    /// Records that `client` went to `server`; when full, expired entries and then the least
    /// recently used ones make room.
    pub fn store(&self, client: IpAddr, server: &str) {
        let now = Instant::now();
        let mut entries = self.entries();
        if let Some(entry) = entries.get_mut(&client) {
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
            client,
            Entry {
                server: server.to_string(),
                used: now,
            },
        );
    }

    /// Evicts in batches (a sixteenth of the table at least), so a full table costs one scan
    /// per many new clients rather than one per client.
    fn make_room(&self, entries: &mut HashMap<IpAddr, Entry>, limit: usize, now: Instant) {
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

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn entries_are_matched_refreshed_and_the_least_recent_evicted() {
        let table = StickTable::new(config::StickTable {
            size: 2,
            expire: NO_EXPIRY,
        });
        table.store(ip(1), "s1");
        table.store(ip(2), "s2");
        assert_eq!(table.lookup(ip(1)).as_deref(), Some("s1"));
        // ip(2) is now the least recently used: it makes room for ip(3).
        table.store(ip(3), "s3");
        assert_eq!(table.len(), 2);
        assert_eq!(table.lookup(ip(2)), None);
        assert_eq!(table.lookup(ip(3)).as_deref(), Some("s3"));
        table.store(ip(1), "s2");
        assert_eq!(table.lookup(ip(1)).as_deref(), Some("s2"));
    }

    #[test]
    fn expired_entries_are_forgotten() {
        let table = StickTable::new(config::StickTable {
            size: 10,
            expire: Some(Duration::from_millis(20)),
        });
        table.store(ip(1), "s1");
        assert_eq!(table.lookup(ip(1)).as_deref(), Some("s1"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(table.lookup(ip(1)), None);
        assert!(table.is_empty());
    }
}
