//! HAProxy's rise/fall health counter: one number that says both whether a server is UP and
//! how far it is from changing state.
//!
//! `health` runs from 0 to `rise + fall - 1`. Values below `rise` mean DOWN, the others UP.
//! A success moves it up by one, and reaching `rise` jumps to the top (fully UP); a failure
//! moves it down by one while it stays at or above `rise`, and from `rise` drops to 0 (DOWN).
//! So a fully UP server goes DOWN after `fall` consecutive failures and a fully DOWN one comes
//! UP after `rise` consecutive successes. A server starts UP at `health = rise`: one failed
//! first check marks it DOWN, as in HAProxy, so a dead server never takes traffic for long.

use std::time::Duration;

/// A change of operational state caused by a check result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

/// Where the counter stands, as HAProxy's stats show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fully UP.
    Up,
    /// UP, but `failures` of `fall` consecutive failures already seen ("UP 1/3" style).
    GoingDown { failures: u32, fall: u32 },
    /// Fully DOWN.
    Down,
    /// DOWN, with `successes` of `rise` consecutive successes seen ("DOWN 1/2" style).
    GoingUp { successes: u32, rise: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCounter {
    rise: u32,
    fall: u32,
    health: u32,
}

impl HealthCounter {
    /// A counter for a server starting UP (HAProxy's start state). `rise` and `fall` are at
    /// least 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        let rise = rise.max(1);
        let fall = fall.max(1);
        HealthCounter {
            rise,
            fall,
            health: rise,
        }
    }

    /// A counter for a server starting DOWN (e.g. restored from a state file).
    pub fn new_down(rise: u32, fall: u32) -> Self {
        let mut counter = Self::new(rise, fall);
        counter.health = 0;
        counter
    }

    fn top(&self) -> u32 {
        self.rise + self.fall - 1
    }

    pub fn is_up(&self) -> bool {
        self.health >= self.rise
    }

    /// The raw counter (`srv_check_health` in `show servers state`).
    pub fn health(&self) -> u32 {
        self.health
    }

    pub fn rise(&self) -> u32 {
        self.rise
    }

    pub fn fall(&self) -> u32 {
        self.fall
    }

    pub fn phase(&self) -> Phase {
        if self.is_up() {
            if self.health == self.top() {
                Phase::Up
            } else {
                Phase::GoingDown {
                    failures: self.top() - self.health,
                    fall: self.fall,
                }
            }
        } else if self.health == 0 {
            Phase::Down
        } else {
            Phase::GoingUp {
                successes: self.health,
                rise: self.rise,
            }
        }
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn record(&mut self, passed: bool) -> Option<Transition> {
        let was_up = self.is_up();
        if passed {
            if self.health < self.top() {
                self.health += 1;
                if self.health >= self.rise {
                    self.health = self.top();
                }
            }
        } else if self.health > self.rise {
            self.health -= 1;
        } else {
            self.health = 0;
        }
        match (was_up, self.is_up()) {
            (false, true) => Some(Transition::Up),
            (true, false) => Some(Transition::Down),
            _ => None,
        }
    }

    /// `on-error sudden-death`: one more failure will mark the server DOWN.
    pub fn sudden_death(&mut self) {
        if self.is_up() {
            self.health = self.rise;
        }
    }

    /// `on-error mark-down` (or an agent's `down`): DOWN at once.
    pub fn force_down(&mut self) -> Option<Transition> {
        let was_up = self.is_up();
        self.health = 0;
        was_up.then_some(Transition::Down)
    }

    /// An agent's `up`: UP at once.
    pub fn force_up(&mut self) -> Option<Transition> {
        let was_up = self.is_up();
        self.health = self.top();
        (!was_up).then_some(Transition::Up)
    }

    /// The delay before the next check: `inter` when fully UP, `downinter` when fully DOWN,
    /// `fastinter` while changing state (each defaulting to `inter`, as in HAProxy).
    pub fn next_interval(
        &self,
        inter: Duration,
        fastinter: Option<Duration>,
        downinter: Option<Duration>,
    ) -> Duration {
        match self.phase() {
            Phase::Up => inter,
            Phase::Down => downinter.unwrap_or(inter),
            Phase::GoingDown { .. } | Phase::GoingUp { .. } => fastinter.unwrap_or(inter),
        }
    }

    /// HAProxy's status text for the stats page: "UP", "DOWN", "UP 1/3", "DOWN 1/2".
    pub fn status_text(&self) -> String {
        match self.phase() {
            Phase::Up => "UP".to_string(),
            Phase::Down => "DOWN".to_string(),
            Phase::GoingDown { failures, fall } => format!("UP {failures}/{fall}"),
            Phase::GoingUp { successes, rise } => format!("DOWN {successes}/{rise}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_up_and_first_failure_marks_down() {
        let mut c = HealthCounter::new(2, 3);
        assert!(c.is_up());
        assert_eq!(c.record(false), Some(Transition::Down));
        assert_eq!(c.phase(), Phase::Down);
    }

    #[test]
    fn fully_up_server_needs_fall_failures() {
        let mut c = HealthCounter::new(2, 3);
        assert_eq!(c.record(true), None);
        assert_eq!(c.phase(), Phase::Up);
        assert_eq!(c.record(false), None);
        assert_eq!(c.status_text(), "UP 1/3");
        assert_eq!(c.record(false), None);
        assert_eq!(c.status_text(), "UP 2/3");
        assert_eq!(c.record(false), Some(Transition::Down));
        assert_eq!(c.status_text(), "DOWN");
    }

    #[test]
    fn down_server_needs_rise_successes_and_a_failure_resets() {
        let mut c = HealthCounter::new_down(3, 2);
        assert_eq!(c.record(true), None);
        assert_eq!(c.status_text(), "DOWN 1/3");
        assert_eq!(c.record(false), None);
        assert_eq!(c.phase(), Phase::Down);
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(true), Some(Transition::Up));
        assert_eq!(c.phase(), Phase::Up);
        assert_eq!(c.health(), 4);
    }

    #[test]
    fn a_failure_while_going_down_then_success_recovers_fully() {
        let mut c = HealthCounter::new(2, 3);
        c.record(true);
        c.record(false);
        assert_eq!(c.record(true), None);
        assert_eq!(c.phase(), Phase::Up);
    }

    #[test]
    fn rise_and_fall_of_one() {
        let mut c = HealthCounter::new(1, 1);
        assert_eq!(c.record(false), Some(Transition::Down));
        assert_eq!(c.record(true), Some(Transition::Up));
        assert_eq!(c.record(false), Some(Transition::Down));
        let zero = HealthCounter::new(0, 0);
        assert_eq!((zero.rise(), zero.fall()), (1, 1));
    }

    #[test]
    fn sudden_death_and_forced_transitions() {
        let mut c = HealthCounter::new(2, 3);
        c.record(true);
        c.sudden_death();
        assert!(c.is_up());
        assert_eq!(c.record(false), Some(Transition::Down));
        assert_eq!(c.force_up(), Some(Transition::Up));
        assert_eq!(c.force_up(), None);
        assert_eq!(c.force_down(), Some(Transition::Down));
        assert_eq!(c.force_down(), None);
    }

    #[test]
    fn intervals_follow_the_phase() {
        let inter = Duration::from_secs(5);
        let fast = Some(Duration::from_secs(1));
        let down = Some(Duration::from_secs(30));
        let mut c = HealthCounter::new(2, 3);
        c.record(true);
        assert_eq!(c.next_interval(inter, fast, down), inter);
        c.record(false);
        assert_eq!(c.next_interval(inter, fast, down), Duration::from_secs(1));
        c.record(false);
        c.record(false);
        assert_eq!(c.next_interval(inter, fast, down), Duration::from_secs(30));
        c.record(true);
        assert_eq!(c.next_interval(inter, fast, down), Duration::from_secs(1));
        assert_eq!(c.next_interval(inter, None, None), inter);
    }
}
