//! `balance first`: the pickable server with the lowest index. The engine marks servers that
//! reached their `maxconn` ineligible, so traffic fills servers one after the other and the
//! last ones can be powered down when idle.

use crate::{Algorithm, PickRequest, ServerView};

#[derive(Debug, Default)]
pub struct First;

impl First {
    pub fn new() -> Self {
        First
    }
}

impl Algorithm for First {
    fn pick(&self, request: &PickRequest<'_>) -> Option<usize> {
        request.servers.iter().position(ServerView::pickable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn lowest_pickable_index() {
        let alg = First::new();
        assert_eq!(alg.pick(&req(&views(&[1, 1, 1]), 0)), Some(0));
        let s = views_eligible(&[1, 1, 1], &[false, true, true]);
        assert_eq!(alg.pick(&req(&s, 0)), Some(1));
        assert_eq!(alg.pick(&req(&views(&[0, 0, 5]), 0)), Some(2));
    }

    #[test]
    fn empty_and_ineligible() {
        let alg = First::new();
        assert_eq!(alg.pick(&req(&[], 0)), None);
        assert_eq!(
            alg.pick(&req(&views_eligible(&[1, 1], &[false, false]), 0)),
            None
        );
        assert_eq!(alg.pick(&req(&views(&[0]), 0)), None);
    }

    /// With maxconn 10 per server enforced by marking full servers ineligible, 25 connections
    /// fill the first two servers and put 5 on the third; the fourth stays idle.
    #[test]
    fn fills_servers_in_order() {
        let alg = First::new();
        let mut servers = views(&[1, 1, 1, 1]);
        for _ in 0..25 {
            let i = alg.pick(&req(&servers, 0)).unwrap();
            servers[i].conns += 1;
            servers[i].eligible = servers[i].conns < 10;
        }
        let conns: Vec<u32> = servers.iter().map(|s| s.conns).collect();
        assert_eq!(conns, [10, 10, 5, 0]);
        // A connection closes on the first server: it is used again first.
        servers[0].conns -= 1;
        servers[0].eligible = true;
        assert_eq!(alg.pick(&req(&servers, 0)), Some(0));
    }
}
