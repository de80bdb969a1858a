//! One VRRP instance at work: the state machine wired to the socket, the addresses, the
//! tracked conditions and the notify scripts.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::io::{gratuitous_arp, Link, Netlink, VrrpSocket};
use crate::machine::{Action, Machine, Settings, State};
use crate::packet::{decode_datagram, MULTICAST_GROUP};

/// When gratuitous ARPs are sent after taking the addresses. One may be lost (a switch port
/// still coming up, a stack that rate-limits neighbour updates such as Linux's `locktime`
/// for unsolicited replies), so the announcements are spread over two seconds (keepalived
/// repeats its burst after `garp_master_delay`).
const GARP_SCHEDULE_MS: [u64; 5] = [0, 250, 600, 1100, 2100];

/// One `vrrp_instance`.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub start_as_master: bool,
    /// `virtual_ipaddress`: address and prefix length.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// `unicast_peer`: advertise to these instead of the multicast group.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// `unicast_src_ip` (or the interface's first address).
    pub source: Option<Ipv4Addr>,
    pub notify: NotifyScripts,
}

/// keepalived's notify hooks: `notify_master`, `notify_backup`, `notify_fault` run on entry
/// to that state; `notify` runs on every change with `INSTANCE <name> <STATE> <priority>`.
#[derive(Debug, Clone, Default)]
pub struct NotifyScripts {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub any: Option<String>,
}

/// What tracked conditions say, recomputed by the caller (backends, scripts, interfaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tracking {
    /// Sum of the weights of the conditions that apply (negative for failing ones with a
    /// negative weight, positive for passing ones with a positive weight).
    pub priority_delta: i32,
    /// A condition without weight failed: the instance goes to FAULT.
    pub fault: bool,
}

/// Runs the instance until `stop` turns true; then a master resigns (priority 0) and
/// releases the addresses.
pub async fn run(
    instance: Instance,
    mut tracking: watch::Receiver<Tracking>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let netlink = Netlink::connect()?;
    let link = netlink.link(&instance.interface, instance.source).await?;
    let socket = VrrpSocket::open(&link, instance.unicast_peers.is_empty())?;
    let settings = Settings {
        vrid: instance.vrid,
        priority: instance.priority,
        advert_interval: instance.advert_interval,
        preempt: instance.preempt,
        preempt_delay: instance.preempt_delay,
        start_as_master: instance.start_as_master,
        primary_ip: link.primary_ip,
        addresses: instance.addresses.iter().map(|(ip, _)| *ip).collect(),
    };
    let announce = {
        let link = link.clone();
        let addresses: Vec<Ipv4Addr> = instance.addresses.iter().map(|(ip, _)| *ip).collect();
        move || {
            for address in &addresses {
                if let Err(error) = gratuitous_arp(&link, *address) {
                    tracing::warn!(%address, %error, "gratuitous ARP");
                }
            }
        }
    };
    let mut io = Io {
        instance: &instance,
        link: &link,
        netlink: &netlink,
        socket: &socket,
        announcer: Announcer::new(&GARP_SCHEDULE_MS, announce),
    };
    // Addresses left by a previous run that crashed must not stay on a backup.
    io.release().await;
    let mut machine = Machine::new(settings, Instant::now());
    let initial = *tracking.borrow_and_update();
    let mut actions = apply_tracking(&mut machine, &instance, initial, Instant::now());
    actions.extend(machine.start(Instant::now()));
    io.perform(&machine, actions).await;

    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = machine.next_deadline();
        let actions = tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(n) => match decode_datagram(&buf[..n]) {
                    Ok((from, advert)) if advert.vrid == instance.vrid => {
                        machine.on_advertisement(from, &advert, Instant::now())
                    }
                    Ok(_) => Vec::new(),
                    Err(error) => {
                        tracing::debug!(instance = %instance.name, %error, "advertisement ignored");
                        Vec::new()
                    }
                },
                Err(error) => {
                    tracing::warn!(instance = %instance.name, %error, "receiving advertisements");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Vec::new()
                }
            },
            _ = sleep_until(deadline) => machine.on_timer(Instant::now()),
            changed = tracking.changed() => {
                if changed.is_err() {
                    Vec::new()
                } else {
                    let now = *tracking.borrow_and_update();
                    apply_tracking(&mut machine, &instance, now, Instant::now())
                }
            }
            // The watch guard must not live in the select's output (it is not Send).
            () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
        };
        io.perform(&machine, actions).await;
    }
    let actions = machine.shutdown();
    io.perform(&machine, actions).await;
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn apply_tracking(
    machine: &mut Machine,
    instance: &Instance,
    tracking: Tracking,
    now: Instant,
) -> Vec<Action> {
    // An address owner (255) keeps its priority, as in keepalived.
    let priority = if instance.priority == 255 {
        255
    } else {
        (i32::from(instance.priority) + tracking.priority_delta).clamp(1, 254) as u8
    };
    let mut actions = machine.set_priority(priority, now);
    actions.extend(machine.set_fault(tracking.fault, now));
    actions
}

/// The gratuitous-ARP announcements of the current mastership. At most one schedule runs;
/// releasing the addresses cancels it (as does dropping this), so a node that steps down
/// within the schedule does not keep pointing clients at itself.
struct Announcer {
    schedule: &'static [u64],
    send: Arc<dyn Fn() + Send + Sync>,
    task: Option<JoinHandle<()>>,
}

impl Announcer {
    fn new(schedule: &'static [u64], send: impl Fn() + Send + Sync + 'static) -> Announcer {
        Announcer {
            schedule,
            send: Arc::new(send),
            task: None,
        }
    }

    /// Starts the schedule from its beginning (the addresses were just taken).
    fn restart(&mut self) {
        self.stop();
        let (schedule, send) = (self.schedule, Arc::clone(&self.send));
        self.task = Some(tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            for at in schedule {
                tokio::time::sleep_until(started + Duration::from_millis(*at)).await;
                send();
            }
        }));
    }

    /// Announces again unless a schedule is still running (it is still repeating): a stream
    /// of lower-priority advertisements does not pile up tasks.
    fn ensure(&mut self) {
        if self.task.as_ref().is_none_or(JoinHandle::is_finished) {
            self.restart();
        }
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Io<'a> {
    instance: &'a Instance,
    link: &'a Link,
    netlink: &'a Netlink,
    socket: &'a VrrpSocket,
    announcer: Announcer,
}

impl Io<'_> {
    async fn perform(&mut self, machine: &Machine, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Advertise(priority) => self.advertise(machine, priority),
                Action::TakeAddresses => self.take().await,
                Action::Announce => self.announcer.ensure(),
                Action::ReleaseAddresses => self.release().await,
                Action::Entered(state) => self.entered(state, machine.priority()),
            }
        }
    }

    fn advertise(&self, machine: &Machine, priority: u8) {
        let advert = machine.advertisement(priority);
        let destinations = if self.instance.unicast_peers.is_empty() {
            vec![MULTICAST_GROUP]
        } else {
            self.instance.unicast_peers.clone()
        };
        for destination in destinations {
            let message = advert.encode(self.link.primary_ip, destination);
            if let Err(error) = self.socket.send(&message, destination) {
                tracing::warn!(instance = %self.instance.name, %destination, %error, "sending an advertisement");
            }
        }
    }

    async fn take(&mut self) {
        for (address, prefix) in &self.instance.addresses {
            if let Err(error) = self.netlink.add_address(self.link, *address, *prefix).await {
                eprintln!(
                    "switchyard: VRRP {}: cannot add {address}/{prefix}: {error}",
                    self.instance.name
                );
            }
        }
        self.announcer.restart();
    }

    async fn release(&mut self) {
        // First: not one more announcement for addresses we are giving up.
        self.announcer.stop();
        for (address, _) in &self.instance.addresses {
            if let Err(error) = self.netlink.remove_address(self.link, *address).await {
                eprintln!(
                    "switchyard: VRRP {}: cannot remove {address}: {error}",
                    self.instance.name
                );
            }
        }
    }

    fn entered(&self, state: State, priority: u8) {
        // keepalived's log wording, so existing log watchers match.
        eprintln!(
            "switchyard: VRRP_Instance({}) Entering {} STATE (priority {priority})",
            self.instance.name,
            state.name()
        );
        for command in notify_commands(&self.instance.notify, &self.instance.name, state, priority)
        {
            match tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&command)
                .spawn()
            {
                Ok(mut child) => {
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                }
                Err(error) => eprintln!("switchyard: VRRP notify '{command}': {error}"),
            }
        }
    }
}

/// The notify commands to run on entering `state`, in order. As keepalived: the per-state
/// scripts run as written; `notify` gets `INSTANCE <name> <STATE> <priority>` appended.
pub fn notify_commands(
    notify: &NotifyScripts,
    instance: &str,
    state: State,
    priority: u8,
) -> Vec<String> {
    let specific = match state {
        State::Master => notify.master.as_deref(),
        State::Backup => notify.backup.as_deref(),
        State::Fault => notify.fault.as_deref(),
        State::Init => None,
    };
    let generic = notify
        .any
        .as_deref()
        .map(|script| format!("{script} INSTANCE {instance} {} {priority}", state.name()));
    specific
        .map(str::to_string)
        .into_iter()
        .chain(generic)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const FAST: [u64; 4] = [0, 100, 200, 300];
    /// Longer than FAST, with room for a loaded machine.
    const AFTER: Duration = Duration::from_millis(600);

    fn counting() -> (Arc<AtomicUsize>, Announcer) {
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&sent);
        let announcer = Announcer::new(&FAST, move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        (sent, announcer)
    }

    #[tokio::test]
    async fn releasing_the_addresses_stops_the_announcements() {
        let (sent, mut announcer) = counting();
        announcer.restart();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = sent.load(Ordering::SeqCst);
        assert!(before >= 1);
        // Deposed within the schedule: not one more gratuitous ARP.
        announcer.stop();
        tokio::time::sleep(AFTER).await;
        assert_eq!(sent.load(Ordering::SeqCst), before);
        // Dropping (the instance stopped) cancels too.
        announcer.restart();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(announcer);
        let before = sent.load(Ordering::SeqCst);
        tokio::time::sleep(AFTER).await;
        assert_eq!(sent.load(Ordering::SeqCst), before);
        assert!(before < 2 * FAST.len());
    }

    #[tokio::test]
    async fn announcing_again_does_not_pile_up_schedules() {
        let (sent, mut announcer) = counting();
        announcer.restart();
        for _ in 0..10 {
            announcer.ensure();
        }
        tokio::time::sleep(AFTER).await;
        assert_eq!(sent.load(Ordering::SeqCst), FAST.len());
        // Once the schedule is over, a new announcement runs it again.
        announcer.ensure();
        tokio::time::sleep(AFTER).await;
        assert_eq!(sent.load(Ordering::SeqCst), 2 * FAST.len());
    }

    #[test]
    fn notify_commands_use_keepalived_arguments() {
        let notify = NotifyScripts {
            master: Some("/etc/sy/master.sh".into()),
            backup: None,
            fault: Some("/etc/sy/fault.sh now".into()),
            any: Some("/etc/sy/event.sh".into()),
        };
        assert_eq!(
            notify_commands(&notify, "VI_1", State::Master, 150),
            [
                "/etc/sy/master.sh",
                "/etc/sy/event.sh INSTANCE VI_1 MASTER 150"
            ]
        );
        assert_eq!(
            notify_commands(&notify, "VI_1", State::Backup, 90),
            ["/etc/sy/event.sh INSTANCE VI_1 BACKUP 90"]
        );
        assert_eq!(
            notify_commands(&notify, "VI_1", State::Fault, 100),
            [
                "/etc/sy/fault.sh now",
                "/etc/sy/event.sh INSTANCE VI_1 FAULT 100"
            ]
        );
        assert!(notify_commands(&NotifyScripts::default(), "VI_1", State::Master, 1).is_empty());
    }
}
