//! The plain `check`: a TCP connect, nothing sent.

use super::conn::connect_target;
use super::{Clock, Target};
use crate::status::{CheckOutcome, CheckStatus};

/// Connects to the target: L4OK once established, L4CON with the OS error text when refused
/// or unreachable, L4TOUT when no answer came in time.
pub async fn check(target: &Target) -> CheckOutcome {
    let clock = Clock::start(target);
    match connect_target(target, &clock).await {
        Ok(stream) => {
            drop(stream);
            clock.outcome(CheckStatus::L4Ok, "")
        }
        Err(outcome) => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::testutil::{closed_port_target, target_for, unanswered_target};

    #[tokio::test]
    async fn connect_is_l4ok() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = target_for(listener.local_addr().unwrap());
        let outcome = check(&target).await;
        assert_eq!(outcome.status, CheckStatus::L4Ok, "{outcome:?}");
    }

    #[tokio::test]
    async fn refused_is_l4con_with_the_os_text() {
        let outcome = check(&closed_port_target()).await;
        assert_eq!(outcome.status, CheckStatus::L4Con);
        assert_eq!(outcome.info, "Connection refused");
    }

    #[tokio::test]
    async fn no_answer_is_l4tout() {
        let (target, _keep) = unanswered_target().await;
        let outcome = check(&target).await;
        assert_eq!(outcome.status, CheckStatus::L4Timeout, "{outcome:?}");
    }
}
