//! One VRRP instance at work: the state machine wired to the socket, the addresses, the
//! tracked conditions and the notify scripts.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::io::{gratuitous_arp, Link, Netlink, VrrpSocket};
use crate::machine::{Action, Machine, Settings, State};
use crate::packet::{decode_datagram, MULTICAST_GROUP};

/// When gratuitous ARPs are sent after taking the addresses. Linux ignores a neighbour
/// update that comes less than `locktime` (1 s by default) after the previous one, so a
/// single burst may be lost on hosts that just refreshed their entry: the announcements are
/// spread over two seconds (keepalived repeats its burst after `garp_master_delay`).
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
    let io = Io {
        instance: &instance,
        link: &link,
        netlink: &netlink,
        socket: &socket,
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

struct Io<'a> {
    instance: &'a Instance,
    link: &'a Link,
    netlink: &'a Netlink,
    socket: &'a VrrpSocket,
}

impl Io<'_> {
    async fn perform(&self, machine: &Machine, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Advertise(priority) => self.advertise(machine, priority),
                Action::TakeAddresses => self.take().await,
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

    async fn take(&self) {
        for (address, prefix) in &self.instance.addresses {
            if let Err(error) = self.netlink.add_address(self.link, *address, *prefix).await {
                eprintln!(
                    "switchyard: VRRP {}: cannot add {address}/{prefix}: {error}",
                    self.instance.name
                );
            }
        }
        let link = self.link.clone();
        let addresses: Vec<Ipv4Addr> = self.instance.addresses.iter().map(|(ip, _)| *ip).collect();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            for at in GARP_SCHEDULE_MS {
                tokio::time::sleep_until(started + Duration::from_millis(at)).await;
                for address in &addresses {
                    if let Err(error) = gratuitous_arp(&link, *address) {
                        tracing::warn!(%address, %error, "gratuitous ARP");
                    }
                }
            }
        });
    }

    async fn release(&self) {
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
        let notify = &self.instance.notify;
        let specific = match state {
            State::Master => notify.master.as_deref(),
            State::Backup => notify.backup.as_deref(),
            State::Fault => notify.fault.as_deref(),
            State::Init => None,
        };
        // As keepalived: the per-state scripts run as written, `notify` gets the details.
        let generic = notify.any.as_deref().map(|script| {
            format!(
                "{script} INSTANCE {} {} {priority}",
                self.instance.name,
                state.name()
            )
        });
        for command in specific.map(str::to_string).into_iter().chain(generic) {
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
