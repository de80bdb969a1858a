//! Database-role checks (a Switchyard extension): log in with real authentication and ask
//! the database what it is, so a backend can require a primary, a standby within a lag, or a
//! Synced Galera node, without external scripts.
