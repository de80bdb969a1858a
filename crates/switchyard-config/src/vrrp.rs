//! The model of `vrrp_instance` and `vrrp_script` sections (Switchyard's built-in VRRP,
//! keepalived's vocabulary).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::model::Span;

/// A `vrrp_instance NAME` section: one virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstance {
    pub span: Span,
    pub name: String,
    pub interface: String,
    /// `state MASTER`: claim the addresses at start (keepalived); `BACKUP` (default) waits.
    pub start_as_master: bool,
    /// `virtual_router_id` 1..=255 (0 until set).
    pub vrid: u8,
    /// `priority` 1..=255 (default 100; 255 = address owner).
    pub priority: u8,
    /// `advert_int` (default 1 s).
    pub advert_int: Duration,
    /// `nopreempt` turns it off (default on).
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub unicast_src: Option<Ipv4Addr>,
    pub unicast_peers: Vec<Ipv4Addr>,
    /// `virtual_ipaddress ADDR[/PREFIX]...`.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// `track_script NAME [weight N]` (the script's own weight when absent).
    pub track_scripts: Vec<(String, Option<i32>)>,
    /// `track_interface NAME [weight N]` (0: FAULT when down).
    pub track_interfaces: Vec<(String, i32)>,
    /// `track_backend NAME [min-up N] [weight N]` (Switchyard extension).
    pub track_backends: Vec<TrackBackend>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify: Option<String>,
}

impl VrrpInstance {
    pub fn new(span: Span, name: String) -> Self {
        VrrpInstance {
            span,
            name,
            interface: String::new(),
            start_as_master: false,
            vrid: 0,
            priority: 100,
            advert_int: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            unicast_src: None,
            unicast_peers: Vec::new(),
            addresses: Vec::new(),
            track_scripts: Vec::new(),
            track_interfaces: Vec::new(),
            track_backends: Vec::new(),
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify: None,
        }
    }
}

/// `track_backend`: the instance's priority depends on a backend having at least `min_up`
/// usable servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackBackend {
    pub backend: String,
    pub min_up: u32,
    /// Added when the condition fails (negative) or holds (positive); 0: FAULT when it fails.
    pub weight: i32,
}

/// A `vrrp_script NAME` section: a command whose exit status is tracked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpScript {
    pub span: Span,
    pub name: String,
    /// Run with `/bin/sh -c`.
    pub script: String,
    /// Default 1 s.
    pub interval: Duration,
    /// Default: the interval.
    pub timeout: Option<Duration>,
    /// Default 0 (FAULT when failing).
    pub weight: i32,
    pub rise: u32,
    pub fall: u32,
}

impl VrrpScript {
    pub fn new(span: Span, name: String) -> Self {
        VrrpScript {
            span,
            name,
            script: String::new(),
            interval: Duration::from_secs(1),
            timeout: None,
            weight: 0,
            rise: 1,
            fall: 1,
        }
    }
}
