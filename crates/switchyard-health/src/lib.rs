//! Health checks: the check kinds HAProxy operators configure (`check`, `option httpchk`,
//! `option mysql-check`, `option pgsql-check`, `tcp-check`, `agent-check`), Switchyard's
//! database-role checks, and HAProxy's rise/fall counter that turns results into UP/DOWN.
//!
//! This crate knows nothing about the data plane: the engine runs one task per checked server
//! that calls [`kinds::run`] and feeds [`HealthCounter`], then applies the transitions.

pub mod counter;
pub mod kinds;
mod run;
pub mod status;

pub use counter::{HealthCounter, Phase, Transition};
pub use run::{check_address, run_check};
pub use status::{CheckOutcome, CheckStatus};
