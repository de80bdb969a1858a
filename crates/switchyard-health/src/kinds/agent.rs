//! `agent-check`: connect to the agent, send `agent-send` if any, read one line (up to the
//! first CR or LF, or the close; at most 1 KiB) and parse HAProxy's agent grammar.
//!
//! Words are separated by spaces, tabs or commas, case-insensitive, in any order, the last of a
//! kind winning: `up`, `down`, `stopped`, `fail` (operational state), `ready`, `drain`,
//! `maint` (administrative state), `N%` (weight relative to the configured one),
//! `maxconn:N`; `#` starts a free-text description running to the end of the line.
//!
//! The outcome is L7OK when the line could be used (an empty line too: nothing to change), with
//! HAProxy's info text ("via agent : down (disk full)", "agent reports an error : WORD",
//! "agent warns : ..."); L7RSP when nothing was received, the line was cut by the 1 KiB bound,
//! or none of its words was understood. What was understood is in the reply's fields whatever
//! the status.

use super::conn::{connect_target, read_some, write_all, IoError};
use super::{Clock, Target};
use crate::status::{CheckOutcome, CheckStatus};

/// The most read from an agent.
pub const AGENT_LINE_MAX: usize = 1024;

/// Administrative state an agent asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentAdmin {
    Ready,
    Drain,
    Maint,
}

/// Operational state an agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentOp {
    Up,
    Down,
    Failed,
    Stopped,
}

/// One agent check's result: the outcome, and what the agent asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReply {
    pub outcome: CheckOutcome,
    /// `N%`: weight as a percentage of the configured weight.
    pub weight_percent: Option<u32>,
    pub admin: Option<AgentAdmin>,
    pub operational: Option<AgentOp>,
    /// `maxconn:N`.
    pub maxconn: Option<u32>,
    /// The description after `#`.
    pub message: Option<String>,
}

impl AgentReply {
    fn failed(outcome: CheckOutcome) -> AgentReply {
        AgentReply {
            outcome,
            weight_percent: None,
            admin: None,
            operational: None,
            maxconn: None,
            message: None,
        }
    }
}

/// One parsed agent line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentLine {
    pub weight_percent: Option<u32>,
    pub admin: Option<AgentAdmin>,
    pub operational: Option<AgentOp>,
    pub maxconn: Option<u32>,
    pub message: Option<String>,
    /// The operational word as the agent wrote it ("UP", "down"...).
    pub operational_word: Option<String>,
    /// The first word not understood.
    pub error: Option<String>,
    /// The first problem with a weight or maxconn value.
    pub warning: Option<String>,
    /// Whether at least one word was understood.
    pub understood: bool,
}

impl AgentLine {
    /// HAProxy's info text for this line.
    pub fn info(&self) -> String {
        if let Some(word) = &self.operational_word {
            let mut msg = self.message.clone().unwrap_or_default();
            if msg.is_empty() || self.operational == Some(AgentOp::Up) {
                if let Some(err) = &self.error {
                    msg = err.clone();
                } else if let Some(wrn) = &self.warning {
                    msg = wrn.clone();
                }
            }
            if msg.is_empty() {
                format!("via agent : {word}")
            } else {
                format!("via agent : {word} ({msg})")
            }
        } else if let Some(err) = &self.error {
            format!("agent reports an error : {err}")
        } else if let Some(wrn) = &self.warning {
            format!("agent warns : {wrn}")
        } else {
            String::new()
        }
    }
}

/// Parses one agent line (without its line end). Never panics.
pub fn parse_agent_line(line: &[u8]) -> AgentLine {
    let mut parsed = AgentLine::default();
    let mut weight_word: Option<&[u8]> = None;
    let mut maxconn_word: Option<&[u8]> = None;
    let mut rest = line;
    loop {
        let skip = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t' || b == b',')
            .count();
        rest = &rest[skip..];
        let Some(&first) = rest.first() else { break };
        if first == b'#' {
            let text = &rest[1..];
            let skip = text
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            let text = String::from_utf8_lossy(&text[skip..]);
            let text: String = text.chars().filter(|c| !c.is_control()).collect();
            let text = text.trim_end().to_string();
            parsed.message = (!text.is_empty()).then_some(text);
            break;
        }
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == b'\t' || b == b',')
            .unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        let lower = word.to_ascii_lowercase();
        let mut known = true;
        match lower.as_slice() {
            b"up" => parsed.operational = Some(AgentOp::Up),
            b"down" => parsed.operational = Some(AgentOp::Down),
            b"stopped" => parsed.operational = Some(AgentOp::Stopped),
            b"fail" => parsed.operational = Some(AgentOp::Failed),
            b"ready" => parsed.admin = Some(AgentAdmin::Ready),
            b"drain" => parsed.admin = Some(AgentAdmin::Drain),
            b"maint" => parsed.admin = Some(AgentAdmin::Maint),
            _ if word[0].is_ascii_digit() && word.contains(&b'%') => weight_word = Some(word),
            _ if lower.starts_with(b"maxconn:") => maxconn_word = Some(&word[8..]),
            _ => {
                known = false;
                if parsed.error.is_none() {
                    parsed.error = Some(printable(word));
                }
            }
        }
        if known {
            parsed.understood = true;
        }
        if matches!(lower.as_slice(), b"up" | b"down" | b"stopped" | b"fail") {
            parsed.operational_word = Some(printable(word));
        }
    }
    if let Some(word) = weight_word {
        match parse_weight(word) {
            Ok(percent) => parsed.weight_percent = Some(percent),
            Err(warning) => parsed.warning = parsed.warning.take().or(Some(warning.into())),
        }
    }
    if let Some(value) = maxconn_word {
        match parse_maxconn(value) {
            Ok(maxconn) => parsed.maxconn = Some(maxconn),
            Err(warning) => parsed.warning = parsed.warning.take().or(Some(warning.into())),
        }
    }
    parsed
}

fn printable(word: &[u8]) -> String {
    String::from_utf8_lossy(word)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// `N%`: digits then exactly one `%`.
fn parse_weight(word: &[u8]) -> Result<u32, &'static str> {
    let digits = word.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err("Empty weight string empty or preceded by garbage");
    }
    if &word[digits..] != b"%" {
        return Err("Trailing garbage in weight string");
    }
    std::str::from_utf8(&word[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or("Relative weight too large.")
}

fn parse_maxconn(value: &[u8]) -> Result<u32, &'static str> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err("maxconn string empty or preceded by garbage");
    }
    if digits != value.len() {
        return Err("Trailing garbage in maxconn string");
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or("maxconn value too large")
}

/// Runs one agent check.
pub async fn check(target: &Target, send: Option<&str>) -> AgentReply {
    let clock = Clock::start(target);
    let mut stream = match connect_target(target, &clock).await {
        Ok(stream) => stream,
        Err(outcome) => return AgentReply::failed(outcome),
    };
    if let Some(data) = send.filter(|s| !s.is_empty()) {
        match write_all(&mut stream, data.as_bytes(), &clock).await {
            Ok(()) => {}
            Err(IoError::Timeout) => {
                return AgentReply::failed(
                    clock.outcome(CheckStatus::L7Timeout, "timeout sending to the agent"),
                )
            }
            Err(IoError::Failed(text)) => {
                return AgentReply::failed(clock.outcome(CheckStatus::SockErr, text))
            }
        }
    }
    let mut buf = Vec::with_capacity(64);
    let line_end = |buf: &[u8]| buf.iter().position(|&b| b == b'\n' || b == b'\r' || b == 0);
    let line = loop {
        if let Some(end) = line_end(&buf) {
            break &buf[..end];
        }
        if buf.len() >= AGENT_LINE_MAX {
            return AgentReply::failed(
                clock.outcome(CheckStatus::L7Rsp, "Ignoring incomplete line from agent"),
            );
        }
        match read_some(&mut stream, &mut buf, AGENT_LINE_MAX, &clock).await {
            Ok(0) if buf.is_empty() => {
                return AgentReply::failed(
                    clock.outcome(CheckStatus::L7Rsp, "empty response from agent"),
                )
            }
            Ok(0) => break &buf[..], // closed without a line end: take what came
            Ok(_) => {}
            Err(IoError::Timeout) => {
                return AgentReply::failed(
                    clock.outcome(CheckStatus::L7Timeout, "timeout waiting for the agent"),
                )
            }
            Err(IoError::Failed(text)) if buf.is_empty() => {
                return AgentReply::failed(clock.outcome(CheckStatus::SockErr, text))
            }
            Err(IoError::Failed(_)) => break &buf[..],
        }
    };
    let parsed = parse_agent_line(line);
    let status = if parsed.error.is_some() && !parsed.understood {
        CheckStatus::L7Rsp
    } else {
        CheckStatus::L7Ok
    };
    let outcome = clock.outcome(status, parsed.info());
    AgentReply {
        outcome,
        weight_percent: parsed.weight_percent,
        admin: parsed.admin,
        operational: parsed.operational,
        maxconn: parsed.maxconn,
        message: parsed.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::testutil::{
        closed_port_target, fuzz_inputs, read_until, serve_bytes, serve_once, serve_silence,
        short_target, target_for,
    };
    use tokio::io::AsyncWriteExt;

    /// How long a test agent lingers after answering.
    const LINGER: std::time::Duration = std::time::Duration::from_secs(3);

    #[test]
    fn grammar() {
        let p = parse_agent_line(b"up 75% , drain maxconn:30 # warming up ");
        assert_eq!(p.operational, Some(AgentOp::Up));
        assert_eq!(p.admin, Some(AgentAdmin::Drain));
        assert_eq!(p.weight_percent, Some(75));
        assert_eq!(p.maxconn, Some(30));
        assert_eq!(p.message.as_deref(), Some("warming up"));
        assert_eq!(p.info(), "via agent : up (warming up)");

        let p = parse_agent_line(b"DOWN\tMAINT,#disk full");
        assert_eq!(
            (p.operational, p.admin),
            (Some(AgentOp::Down), Some(AgentAdmin::Maint))
        );
        assert_eq!(p.info(), "via agent : DOWN (disk full)");

        let p = parse_agent_line(b"fail stopped ready 10% 50%");
        assert_eq!(
            (p.operational, p.admin, p.weight_percent),
            (Some(AgentOp::Stopped), Some(AgentAdmin::Ready), Some(50))
        );

        let p = parse_agent_line(b"50%x maxconn:abc");
        assert_eq!((p.weight_percent, p.maxconn), (None, None));
        assert_eq!(p.info(), "agent warns : Trailing garbage in weight string");
        assert!(p.understood);

        let p = parse_agent_line(b"bogus up");
        assert_eq!(p.info(), "via agent : up (bogus)");
        let p = parse_agent_line(b"bogus");
        assert!(!p.understood);
        assert_eq!(p.info(), "agent reports an error : bogus");
        let p = parse_agent_line(b"");
        assert_eq!(p, AgentLine::default());
        assert_eq!(p.info(), "");
        assert_eq!(parse_agent_line(b"99999999999%").weight_percent, None);
    }

    #[tokio::test]
    async fn sends_and_reads_a_line() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = serve_once(move |mut stream| async move {
            let got = read_until(&mut stream, b"\n").await;
            let _ = tx.send(got);
            let _ = stream
                .write_all(b"drain 25%\r\nignored second line\n")
                .await;
            tokio::time::sleep(LINGER).await;
        })
        .await;
        let reply = check(&target_for(addr), Some("status web1\n")).await;
        assert_eq!(reply.outcome.status, CheckStatus::L7Ok, "{reply:?}");
        assert_eq!(
            (reply.admin, reply.weight_percent, reply.operational),
            (Some(AgentAdmin::Drain), Some(25), None)
        );
        assert_eq!(rx.await.unwrap(), b"status web1\n");
    }

    #[tokio::test]
    async fn line_without_newline_at_close_is_used() {
        let addr = serve_bytes(b"down #maintenance window".to_vec()).await;
        let reply = check(&target_for(addr), None).await;
        assert_eq!(reply.outcome.status, CheckStatus::L7Ok);
        assert_eq!(reply.operational, Some(AgentOp::Down));
        assert_eq!(reply.message.as_deref(), Some("maintenance window"));
        assert_eq!(reply.outcome.info, "via agent : down (maintenance window)");
    }

    #[tokio::test]
    async fn unparseable_empty_and_overlong_are_l7rsp() {
        let addr = serve_bytes(b"hello there\n".to_vec()).await;
        let reply = check(&target_for(addr), None).await;
        assert_eq!(reply.outcome.status, CheckStatus::L7Rsp);
        assert_eq!(reply.outcome.info, "agent reports an error : hello");
        let addr = serve_bytes(Vec::new()).await;
        assert_eq!(
            check(&target_for(addr), None).await.outcome.status,
            CheckStatus::L7Rsp
        );
        let addr = serve_bytes(vec![b'u'; 5000]).await;
        let reply = check(&target_for(addr), None).await;
        assert_eq!(reply.outcome.status, CheckStatus::L7Rsp);
        assert_eq!(reply.outcome.info, "Ignoring incomplete line from agent");
    }

    #[tokio::test]
    async fn silence_refused() {
        let addr = serve_silence().await;
        assert_eq!(
            check(&short_target(addr), None).await.outcome.status,
            CheckStatus::L7Timeout
        );
        let reply = check(&closed_port_target(), Some("x")).await;
        assert_eq!(reply.outcome.status, CheckStatus::L4Con);
        assert_eq!(reply.operational, None);
    }

    #[test]
    fn parser_never_panics() {
        let seeds: [&[u8]; 3] = [
            b"up 75% drain maxconn:10 #ok",
            b"down,maint # x",
            b"100%,ready",
        ];
        for input in fuzz_inputs(&seeds, 20_000) {
            let parsed = parse_agent_line(&input);
            let _ = parsed.info();
        }
    }
}
