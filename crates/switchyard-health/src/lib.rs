//! Health checks: the check kinds HAProxy operators configure (`check`, `option httpchk`,
//! `option mysql-check`, `option pgsql-check`, `tcp-check`, `agent-check`), Switchyard's
//! database-role checks, and the per-server scheduler that turns results into UP/DOWN with
//! HAProxy's rise/fall semantics.

pub mod kinds;
pub mod status;
