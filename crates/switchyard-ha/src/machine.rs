//! The VRRPv3 state machine of one virtual router (RFC 5798 §6.4), as a pure type driven by
//! explicit time: `now` comes from the caller, decisions come back as [`Action`]s. The I/O
//! loop owns sockets, timers and addresses; tests drive this with a fake clock.
//!
//! Beyond the RFC, as keepalived: a tracked condition can put the router in FAULT (it then
//! neither answers nor holds the addresses), `preempt_delay` lets a freshly started router
//! wait before taking over from a lower-priority master, and `start_as_master` (keepalived's
//! `state MASTER`) claims the addresses at once instead of waiting for the master-down
//! interval.
//!
//! Also as keepalived, and against the letter of RFC 5798 (which says to discard it): a
//! master that hears a lower-priority advertisement — the other side of a healed partition,
//! or a node that was frozen — answers with its own advertisement and announces the
//! addresses again, because clients may have followed the other node's gratuitous ARPs
//! meanwhile. For the same reason a master deposed by a better one sends one last
//! advertisement with its own priority: the winner may never have heard it (its
//! advertisement arrived first), and that is how it learns that it must re-announce.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::packet::Advertisement;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub vrid: u8,
    /// Configured priority, 1..=255 (255: the router owns the addresses).
    pub priority: u8,
    pub advert_interval: Duration,
    /// Take over from a lower-priority master (RFC's Preempt_Mode; keepalived's default).
    pub preempt: bool,
    /// After start, how long a lower-priority master is tolerated before preempting.
    pub preempt_delay: Duration,
    /// Claim the addresses at start rather than waiting to hear no master.
    pub start_as_master: bool,
    /// This router's address on the link: breaks priority ties (the higher wins).
    pub primary_ip: Ipv4Addr,
    pub addresses: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// What the I/O loop must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority.
    Advertise(u8),
    /// Add the virtual addresses and announce them (gratuitous ARP).
    TakeAddresses,
    /// Announce the addresses again (gratuitous ARP): another node claimed them meanwhile.
    Announce,
    /// Remove the virtual addresses (and stop announcing them).
    ReleaseAddresses,
    /// The state changed (logs, notify scripts).
    Entered(State),
}

#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    state: State,
    /// Configured priority adjusted by tracked conditions.
    priority: u8,
    /// The interval the current master advertises (ours when master).
    master_interval: Duration,
    advert_at: Option<Instant>,
    master_down_at: Option<Instant>,
    started: Instant,
}

impl Machine {
    pub fn new(settings: Settings, now: Instant) -> Machine {
        Machine {
            priority: settings.priority,
            master_interval: settings.advert_interval,
            settings,
            state: State::Init,
            advert_at: None,
            master_down_at: None,
            started: now,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The advertisement this router sends now.
    pub fn advertisement(&self, priority: u8) -> Advertisement {
        Advertisement {
            vrid: self.settings.vrid,
            priority,
            max_advert_int_cs: u16::try_from(self.settings.advert_interval.as_millis() / 10)
                .unwrap_or(0x0fff)
                .clamp(1, 0x0fff),
            addresses: self.settings.addresses.clone(),
        }
    }

    /// Skew_Time: lower priorities wait longer, so the best backup takes over first.
    fn skew(&self) -> Duration {
        self.master_interval * u32::from(256 - u16::from(self.priority)) / 256
    }

    fn master_down_interval(&self) -> Duration {
        self.master_interval * 3 + self.skew()
    }

    /// When [`Machine::on_timer`] must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Master => self.advert_at,
            State::Backup => self.master_down_at,
            State::Init | State::Fault => None,
        }
    }

    /// The Startup event (§6.4.1).
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        if self.state != State::Init {
            return Vec::new();
        }
        if self.priority == 255 || self.settings.start_as_master {
            self.become_master(now)
        } else {
            self.become_backup(now)
        }
    }

    fn become_master(&mut self, now: Instant) -> Vec<Action> {
        self.state = State::Master;
        self.master_interval = self.settings.advert_interval;
        self.advert_at = Some(now + self.settings.advert_interval);
        self.master_down_at = None;
        vec![
            Action::Advertise(self.priority),
            Action::TakeAddresses,
            Action::Entered(State::Master),
        ]
    }

    fn become_backup(&mut self, now: Instant) -> Vec<Action> {
        let was_master = self.state == State::Master;
        self.state = State::Backup;
        self.advert_at = None;
        self.master_down_at = Some(now + self.master_down_interval());
        let mut actions = Vec::new();
        if was_master {
            actions.push(Action::ReleaseAddresses);
        }
        actions.push(Action::Entered(State::Backup));
        actions
    }

    /// A timer expired (or the loop woke up early: nothing happens before the deadline).
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Master if self.advert_at.is_some_and(|at| now >= at) => {
                self.advert_at = Some(now + self.settings.advert_interval);
                vec![Action::Advertise(self.priority)]
            }
            State::Backup if self.master_down_at.is_some_and(|at| now >= at) => {
                self.become_master(now)
            }
            _ => Vec::new(),
        }
    }

    /// An advertisement for this VRID arrived from `from` (already validated: TTL,
    /// checksum, version).
    pub fn on_advertisement(
        &mut self,
        from: Ipv4Addr,
        advert: &Advertisement,
        now: Instant,
    ) -> Vec<Action> {
        if advert.vrid != self.settings.vrid || from == self.settings.primary_ip {
            return Vec::new();
        }
        match self.state {
            State::Backup => {
                if advert.priority == 0 {
                    // The master is leaving: take over after the skew only.
                    self.master_down_at = Some(now + self.skew());
                    return Vec::new();
                }
                let lower = advert.priority < self.priority;
                let delaying = now.duration_since(self.started) < self.settings.preempt_delay;
                if !self.settings.preempt || !lower || delaying {
                    self.master_interval = advert.interval();
                    self.master_down_at = Some(now + self.master_down_interval());
                }
                // A lower-priority master is ignored: the master-down timer fires and this
                // router preempts.
                Vec::new()
            }
            State::Master => {
                let wins = advert.priority > self.priority
                    || (advert.priority == self.priority && from > self.settings.primary_ip);
                if wins {
                    self.master_interval = advert.interval();
                    // The winner may not have heard us: our last word makes it re-announce.
                    let mut actions = vec![Action::Advertise(self.priority)];
                    actions.extend(self.become_backup(now));
                    actions
                } else {
                    // Another master (lower, or resigning with 0): clients may have followed
                    // its gratuitous ARPs, so reassert at once and announce again.
                    self.advert_at = Some(now + self.settings.advert_interval);
                    vec![Action::Advertise(self.priority), Action::Announce]
                }
            }
            State::Init | State::Fault => Vec::new(),
        }
    }

    /// The effective priority changed (tracked conditions). A master advertises it at once
    /// so that a better backup can preempt without waiting for the next interval.
    pub fn set_priority(&mut self, priority: u8, now: Instant) -> Vec<Action> {
        let priority = priority.clamp(1, 255);
        if priority == self.priority {
            return Vec::new();
        }
        self.priority = priority;
        match self.state {
            State::Master => {
                self.advert_at = Some(now + self.settings.advert_interval);
                vec![Action::Advertise(priority)]
            }
            _ => Vec::new(),
        }
    }

    /// A tracked condition with no weight failed (FAULT) or recovered.
    pub fn set_fault(&mut self, fault: bool, now: Instant) -> Vec<Action> {
        match (fault, self.state) {
            (true, State::Fault) | (false, State::Backup | State::Master | State::Init) => {
                Vec::new()
            }
            (true, previous) => {
                self.state = State::Fault;
                self.advert_at = None;
                self.master_down_at = None;
                let mut actions = Vec::new();
                if previous == State::Master {
                    actions.push(Action::Advertise(0));
                    actions.push(Action::ReleaseAddresses);
                }
                actions.push(Action::Entered(State::Fault));
                actions
            }
            (false, State::Fault) => {
                self.state = State::Init;
                // Never straight back to master: listen first, as after a start.
                self.settings.start_as_master = false;
                self.start(now)
            }
        }
    }

    /// Shutdown (§6.4.3): a master resigns with priority 0 so a backup takes over after
    /// its skew time instead of the whole master-down interval.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let previous = self.state;
        self.state = State::Init;
        self.advert_at = None;
        self.master_down_at = None;
        if previous == State::Master {
            vec![Action::Advertise(0), Action::ReleaseAddresses]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn settings(priority: u8, last_octet: u8) -> Settings {
        Settings {
            vrid: 51,
            priority,
            advert_interval: SECOND,
            preempt: true,
            preempt_delay: Duration::ZERO,
            start_as_master: false,
            primary_ip: Ipv4Addr::new(10, 9, 0, last_octet),
            addresses: vec![Ipv4Addr::new(10, 9, 0, 100)],
        }
    }

    fn advert(priority: u8) -> Advertisement {
        Advertisement {
            vrid: 51,
            priority,
            max_advert_int_cs: 100,
            addresses: vec![Ipv4Addr::new(10, 9, 0, 100)],
        }
    }

    #[test]
    fn a_backup_takes_over_after_the_master_down_interval_and_skew() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(100, 1), t0);
        assert_eq!(m.start(t0), vec![Action::Entered(State::Backup)]);
        // Master_Down_Interval = 3 * 1 s + (256 - 100) / 256 s.
        let down = SECOND * 3 + SECOND * 156 / 256;
        assert_eq!(m.next_deadline(), Some(t0 + down));
        assert!(m.on_timer(t0 + down - Duration::from_millis(1)).is_empty());
        assert_eq!(
            m.on_timer(t0 + down),
            vec![
                Action::Advertise(100),
                Action::TakeAddresses,
                Action::Entered(State::Master)
            ]
        );
        assert_eq!(m.next_deadline(), Some(t0 + down + SECOND));
        assert_eq!(m.on_timer(t0 + down + SECOND), vec![Action::Advertise(100)]);
    }

    #[test]
    fn advertisements_of_a_better_master_hold_a_backup_back() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(100, 1), t0);
        m.start(t0);
        let peer = Ipv4Addr::new(10, 9, 0, 2);
        for n in 1..10 {
            let now = t0 + SECOND * n;
            assert!(m.on_advertisement(peer, &advert(150), now).is_empty());
            assert!(m.on_timer(now).is_empty());
        }
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn a_lower_master_is_preempted_unless_preemption_is_off_or_delayed() {
        let t0 = Instant::now();
        let peer = Ipv4Addr::new(10, 9, 0, 2);
        let run = |s: Settings| {
            let mut m = Machine::new(s, t0);
            m.start(t0);
            for n in 1..=8 {
                let now = t0 + SECOND * n;
                m.on_advertisement(peer, &advert(50), now);
                m.on_timer(now + Duration::from_millis(500));
            }
            m.state()
        };
        assert_eq!(run(settings(100, 1)), State::Master);
        assert_eq!(
            run(Settings {
                preempt: false,
                ..settings(100, 1)
            }),
            State::Backup
        );
        assert_eq!(
            run(Settings {
                preempt_delay: SECOND * 60,
                ..settings(100, 1)
            }),
            State::Backup
        );
    }

    #[test]
    fn masters_of_equal_priority_resolve_by_address() {
        let t0 = Instant::now();
        let mut low = Machine::new(
            Settings {
                start_as_master: true,
                ..settings(100, 1)
            },
            t0,
        );
        low.start(t0);
        assert_eq!(low.state(), State::Master);
        // The same priority from a lower address loses (we reassert); from a higher one
        // wins (we step down, with a last advertisement).
        assert_eq!(
            low.on_advertisement(Ipv4Addr::new(10, 9, 0, 0), &advert(100), t0),
            vec![Action::Advertise(100), Action::Announce]
        );
        assert_eq!(
            low.on_advertisement(Ipv4Addr::new(10, 9, 0, 2), &advert(100), t0),
            vec![
                Action::Advertise(100),
                Action::ReleaseAddresses,
                Action::Entered(State::Backup)
            ]
        );
    }

    #[test]
    fn a_resigning_master_is_replaced_after_the_skew_time_only() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(200, 1), t0);
        m.start(t0);
        let peer = Ipv4Addr::new(10, 9, 0, 2);
        m.on_advertisement(peer, &advert(250), t0 + SECOND);
        m.on_advertisement(peer, &advert(0), t0 + SECOND * 2);
        let skew = SECOND * 56 / 256;
        assert_eq!(m.next_deadline(), Some(t0 + SECOND * 2 + skew));
        assert_eq!(m.on_timer(t0 + SECOND * 2 + skew).len(), 3);
        assert_eq!(m.state(), State::Master);
        assert_eq!(
            m.shutdown(),
            vec![Action::Advertise(0), Action::ReleaseAddresses]
        );
    }

    #[test]
    fn priority_changes_and_faults_move_the_addresses() {
        let t0 = Instant::now();
        let mut m = Machine::new(
            Settings {
                start_as_master: true,
                ..settings(150, 1)
            },
            t0,
        );
        m.start(t0);
        // A tracked backend lost its servers: weight -60 is advertised at once.
        assert_eq!(m.set_priority(90, t0), vec![Action::Advertise(90)]);
        // The backup (priority 100) now preempts; we step down on its advertisement.
        assert_eq!(
            m.on_advertisement(Ipv4Addr::new(10, 9, 0, 2), &advert(100), t0 + SECOND),
            vec![
                Action::Advertise(90),
                Action::ReleaseAddresses,
                Action::Entered(State::Backup)
            ]
        );
        assert_eq!(
            m.set_fault(true, t0 + SECOND * 2),
            vec![Action::Entered(State::Fault)]
        );
        assert_eq!(m.next_deadline(), None);
        assert_eq!(
            m.set_fault(false, t0 + SECOND * 3),
            vec![Action::Entered(State::Backup)]
        );
    }

    #[test]
    fn a_master_hearing_a_lower_master_reasserts_and_announces_again() {
        // After a partition heals (or the other node was frozen), clients may hold the other
        // node's MAC for the address: keepalived answers with an advertisement and gratuitous
        // ARPs instead of discarding as RFC 5798 says, and so do we.
        let t0 = Instant::now();
        let mut m = Machine::new(
            Settings {
                start_as_master: true,
                ..settings(150, 1)
            },
            t0,
        );
        m.start(t0);
        let peer = Ipv4Addr::new(10, 9, 0, 2);
        let at = t0 + Duration::from_millis(300);
        assert_eq!(
            m.on_advertisement(peer, &advert(100), at),
            vec![Action::Advertise(150), Action::Announce]
        );
        assert_eq!(m.state(), State::Master);
        // The immediate advertisement restarts the interval.
        assert_eq!(m.next_deadline(), Some(at + SECOND));
        assert!(m.on_timer(t0 + SECOND).is_empty());
        // A resigning master (priority 0) gets the same answer.
        assert_eq!(
            m.on_advertisement(peer, &advert(0), at + SECOND),
            vec![Action::Advertise(150), Action::Announce]
        );
        // Our own advertisements (multicast loops back on some setups) change nothing.
        assert!(m
            .on_advertisement(Ipv4Addr::new(10, 9, 0, 1), &advert(100), at)
            .is_empty());
    }

    #[test]
    fn after_a_partition_both_masters_converge_and_the_winner_announces() {
        // Both sides became master while partitioned. Whichever advertisement crosses first,
        // the winner ends up announcing the addresses (the loser's last advertisement tells
        // it), and the loser releases them.
        let t0 = Instant::now();
        let (ip_a, ip_b) = (Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2));
        for a_speaks_first in [true, false] {
            let master = |priority, last| {
                let mut m = Machine::new(
                    Settings {
                        start_as_master: true,
                        ..settings(priority, last)
                    },
                    t0,
                );
                m.start(t0);
                m
            };
            let (mut a, mut b) = (master(150, 1), master(100, 2));
            let mut a_actions = Vec::new();
            if a_speaks_first {
                let b_actions = b.on_advertisement(ip_a, &advert(150), t0);
                assert!(b_actions.contains(&Action::ReleaseAddresses));
                // b's last word reaches a.
                assert_eq!(b_actions[0], Action::Advertise(100));
                a_actions.extend(a.on_advertisement(ip_b, &advert(100), t0));
            } else {
                a_actions.extend(a.on_advertisement(ip_b, &advert(100), t0));
                let b_actions = b.on_advertisement(ip_a, &advert(150), t0);
                assert!(b_actions.contains(&Action::ReleaseAddresses));
            }
            assert!(a_actions.contains(&Action::Announce), "{a_actions:?}");
            assert_eq!((a.state(), b.state()), (State::Master, State::Backup));
        }
    }
}
