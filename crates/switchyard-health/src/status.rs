//! HAProxy check statuses (L4OK, L4CON, L7STS...) and the outcome of one check.
//!
//! The names are the ones HAProxy prints in `show stat` (`check_status`), `show servers
//! state` (as numbers) and its logs, so operators' scripts and dashboards keep working.

use std::fmt;
use std::time::Duration;

/// Result of one check, in HAProxy's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckStatus {
    /// Unknown (never ran).
    Unknown,
    /// Initializing (first check pending).
    Init,
    /// Passive health analysis saw too many consecutive errors on live traffic.
    Hana,
    /// Socket error before connecting (e.g. no source port).
    SockErr,
    /// Layer 4 check passed (connection established, nothing more asked).
    L4Ok,
    /// Layer 4 timeout (no SYN-ACK within the check timeout).
    L4Timeout,
    /// Layer 4 connection problem (refused, unreachable, reset).
    L4Con,
    /// Layer 6 (handshake) passed.
    L6Ok,
    /// Layer 6 timeout.
    L6Timeout,
    /// Layer 6 invalid response (protocol error during the handshake).
    L6Rsp,
    /// Layer 7 response was good.
    L7Ok,
    /// Layer 7 response good but conditional (e.g. HTTP 404 with `disable-on-404`).
    L7OkCond,
    /// Layer 7 timeout (connected, no complete answer in time).
    L7Timeout,
    /// Layer 7 invalid response (protocol error, unexpected content).
    L7Rsp,
    /// Layer 7 response with a bad status (HTTP error code, database not in the role asked).
    L7Sts,
}

impl CheckStatus {
    /// Name as HAProxy prints it (`show stat` `check_status`).
    pub fn name(self) -> &'static str {
        match self {
            CheckStatus::Unknown => "UNK",
            CheckStatus::Init => "INI",
            CheckStatus::Hana => "HANA",
            CheckStatus::SockErr => "SOCKERR",
            CheckStatus::L4Ok => "L4OK",
            CheckStatus::L4Timeout => "L4TOUT",
            CheckStatus::L4Con => "L4CON",
            CheckStatus::L6Ok => "L6OK",
            CheckStatus::L6Timeout => "L6TOUT",
            CheckStatus::L6Rsp => "L6RSP",
            CheckStatus::L7Ok => "L7OK",
            CheckStatus::L7OkCond => "L7OKC",
            CheckStatus::L7Timeout => "L7TOUT",
            CheckStatus::L7Rsp => "L7RSP",
            CheckStatus::L7Sts => "L7STS",
        }
    }

    /// HAProxy's numeric code (`srv_check_status` in `show servers state`, HCHK_STATUS_*).
    pub fn code(self) -> u8 {
        match self {
            CheckStatus::Unknown => 0,
            CheckStatus::Init => 1,
            CheckStatus::Hana => 4,
            CheckStatus::SockErr => 5,
            CheckStatus::L4Ok => 6,
            CheckStatus::L4Timeout => 7,
            CheckStatus::L4Con => 8,
            CheckStatus::L6Ok => 9,
            CheckStatus::L6Timeout => 10,
            CheckStatus::L6Rsp => 11,
            CheckStatus::L7Timeout => 12,
            CheckStatus::L7Rsp => 13,
            CheckStatus::L7Ok => 15,
            CheckStatus::L7OkCond => 16,
            CheckStatus::L7Sts => 17,
        }
    }

    /// Whether this result counts towards `rise` (true) or `fall` (false).
    pub fn passed(self) -> bool {
        matches!(
            self,
            CheckStatus::L4Ok | CheckStatus::L6Ok | CheckStatus::L7Ok | CheckStatus::L7OkCond
        )
    }

    /// The human description HAProxy logs ("Layer4 connection problem", ...).
    pub fn description(self) -> &'static str {
        match self {
            CheckStatus::Unknown => "Unknown",
            CheckStatus::Init => "Initializing",
            CheckStatus::Hana => "Health analyze",
            CheckStatus::SockErr => "Socket error",
            CheckStatus::L4Ok => "Layer4 check passed",
            CheckStatus::L4Timeout => "Layer4 timeout",
            CheckStatus::L4Con => "Layer4 connection problem",
            CheckStatus::L6Ok => "Layer6 check passed",
            CheckStatus::L6Timeout => "Layer6 timeout",
            CheckStatus::L6Rsp => "Layer6 invalid response",
            CheckStatus::L7Ok => "Layer7 check passed",
            CheckStatus::L7OkCond => "Layer7 check conditionally passed",
            CheckStatus::L7Timeout => "Layer7 timeout",
            CheckStatus::L7Rsp => "Layer7 invalid response",
            CheckStatus::L7Sts => "Layer7 wrong status",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of one check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub status: CheckStatus,
    /// Layer-7 code where there is one: HTTP status, MySQL error number, Galera state.
    pub code: Option<u32>,
    /// How long the check took (`check_duration`).
    pub duration: Duration,
    /// Short explanation shown after "info:" in logs (`check_desc` in `show stat`), e.g.
    /// `Connection refused` or `in recovery (standby), primary required`.
    pub info: String,
}

impl CheckOutcome {
    pub fn new(status: CheckStatus, duration: Duration, info: impl Into<String>) -> Self {
        CheckOutcome {
            status,
            code: None,
            duration,
            info: info.into(),
        }
    }

    pub fn with_code(mut self, code: u32) -> Self {
        self.code = Some(code);
        self
    }
}
