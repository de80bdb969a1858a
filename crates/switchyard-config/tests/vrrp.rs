//! `vrrp_instance` / `vrrp_script` sections: keepalived's vocabulary, line per keyword.

use std::net::Ipv4Addr;
use std::time::Duration;

use switchyard_config::*;

fn parse(text: &str) -> Result<Parsed, Vec<String>> {
    parse_sources(&[Source {
        name: "ha.cfg".into(),
        text: text.into(),
    }])
    .map_err(|Diagnostics(d)| d.iter().map(|d| d.to_string()).collect())
}

const BACKEND: &str = "backend pg-write\n    server pg1 10.0.0.21:5432 check\n";

#[test]
fn a_keepalived_style_instance_translates_line_by_line() {
    let text = format!(
        "vrrp_script chk_pg\n    script \"/usr/local/bin/check-pg --quiet\"\n    interval 2\n    \
         timeout 1.5\n    weight -30\n    fall 2\n    rise 3\n\
         vrrp_instance VI_1\n    interface eth0\n    state MASTER\n    virtual_router_id 51\n    \
         priority 150\n    advert_int 0.5\n    preempt_delay 5\n    unicast_src_ip 10.9.0.1\n    \
         unicast_peer 10.9.0.2 10.9.0.3\n    virtual_ipaddress 10.9.0.100/24 10.9.0.101\n    \
         track_script chk_pg\n    track_interface eth1 weight -10\n    \
         track_backend pg-write min-up 1 weight -60\n    notify_master \"/etc/sy/master.sh\"\n    \
         notify \"/etc/sy/any.sh\"\n{BACKEND}"
    );
    let config = parse(&text).unwrap().config;
    let v = &config.vrrp_instances[0];
    assert_eq!(v.name, "VI_1");
    assert_eq!(v.interface, "eth0");
    assert!(v.start_as_master);
    assert_eq!((v.vrid, v.priority), (51, 150));
    assert_eq!(v.advert_int, Duration::from_millis(500));
    assert_eq!(v.preempt_delay, Duration::from_secs(5));
    assert!(v.preempt);
    assert_eq!(v.unicast_src, Some(Ipv4Addr::new(10, 9, 0, 1)));
    assert_eq!(v.unicast_peers.len(), 2);
    assert_eq!(
        v.addresses,
        [
            (Ipv4Addr::new(10, 9, 0, 100), 24),
            (Ipv4Addr::new(10, 9, 0, 101), 32)
        ]
    );
    assert_eq!(v.track_scripts, [("chk_pg".to_string(), None)]);
    assert_eq!(v.track_interfaces, [("eth1".to_string(), -10)]);
    assert_eq!(
        v.track_backends,
        [TrackBackend {
            backend: "pg-write".into(),
            min_up: 1,
            weight: -60
        }]
    );
    assert_eq!(v.notify_master.as_deref(), Some("/etc/sy/master.sh"));
    let s = &config.vrrp_scripts[0];
    assert_eq!(s.script, "/usr/local/bin/check-pg --quiet");
    assert_eq!(
        (s.interval, s.timeout, s.weight, s.fall, s.rise),
        (
            Duration::from_secs(2),
            Some(Duration::from_millis(1500)),
            -30,
            2,
            3
        )
    );
}

#[test]
fn mistakes_are_reported_with_the_line() {
    let text = format!(
        "vrrp_instance VI_1\n    state LEADER\n    priority 0\n    virtual_ipaddress 10.9.0.300/24\n    \
         auth_type PASS\n    track_script nowhere\n    track_backend nobackend\n    bogus 1\n\
         vrrp_instance VI_2\n    interface eth0\n    virtual_router_id 7\n    virtual_ipaddress 10.9.0.7\n\
         vrrp_instance VI_3\n    interface eth0\n    virtual_router_id 7\n    virtual_ipaddress 10.9.0.8\n\
         {BACKEND}"
    );
    let errors = parse(&text).unwrap_err();
    assert_eq!(
        errors,
        [
            "ha.cfg:1: vrrp_instance 'VI_1' has no 'interface'",
            "ha.cfg:1: vrrp_instance 'VI_1' has no 'virtual_router_id'",
            "ha.cfg:1: vrrp_instance 'VI_1' has no 'virtual_ipaddress'",
            "ha.cfg:1: vrrp_instance 'VI_1' tracks unknown vrrp_script 'nowhere'",
            "ha.cfg:1: vrrp_instance 'VI_1' tracks unknown backend 'nobackend'",
            "ha.cfg:2: 'state' expects MASTER or BACKUP, got 'LEADER'",
            "ha.cfg:3: 'priority' expects 1 to 255",
            "ha.cfg:4: 'virtual_ipaddress': '10.9.0.300' is not an IPv4 address (IPv6 VRRP is not supported yet)",
            "ha.cfg:5: 'auth_type': VRRPv3 has no authentication (RFC 5798 removed it); remove the line",
            "ha.cfg:8: unknown keyword 'bogus' in 'vrrp_instance' section",
            "ha.cfg:9: vrrp_instance 'VI_2' and 'VI_3' share virtual_router_id 7 on eth0",
            "ha.cfg:13: vrrp_instance 'VI_3' and 'VI_2' share virtual_router_id 7 on eth0",
        ]
    );
}
