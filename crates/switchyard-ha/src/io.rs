//! What the state machine's actions need from the system: the link (index, MAC, primary
//! address), a raw socket speaking protocol 112, the virtual addresses (netlink), and
//! gratuitous ARP so switches and neighbours learn where the addresses went.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::LinkAttribute;
use socket2::{Domain, Protocol, Socket, Type};

use crate::packet::{MULTICAST_GROUP, PROTOCOL, TTL};

/// The interface an instance runs on.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// The interface's first IPv4 address: the advertisements' source and tie-breaker.
    pub primary_ip: Ipv4Addr,
}

/// A netlink connection (its task runs on the current runtime).
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

fn netlink_error(context: &str, error: rtnetlink::Error) -> io::Error {
    io::Error::other(format!("{context}: {error}"))
}

impl Netlink {
    pub fn connect() -> io::Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Looks up `name`; `primary` overrides the address taken from the interface.
    pub async fn link(&self, name: &str, primary: Option<Ipv4Addr>) -> io::Result<Link> {
        let message = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(|e| netlink_error(&format!("interface '{name}'"), e))?
            .ok_or_else(|| io::Error::other(format!("no interface '{name}'")))?;
        let index = message.header.index;
        let mac = message
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                    let mut mac = [0; 6];
                    mac.copy_from_slice(bytes);
                    Some(mac)
                }
                _ => None,
            })
            .unwrap_or([0; 6]);
        let primary_ip = match primary {
            Some(ip) => ip,
            None => self
                .ipv4_addresses(index)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    io::Error::other(format!("interface '{name}' has no IPv4 address"))
                })?,
        };
        Ok(Link {
            name: name.to_string(),
            index,
            mac,
            primary_ip,
        })
    }

    async fn ipv4_addresses(&self, index: u32) -> io::Result<Vec<Ipv4Addr>> {
        let mut found = Vec::new();
        let mut messages = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(message) = messages
            .try_next()
            .await
            .map_err(|e| netlink_error("listing addresses", e))?
        {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attribute {
                    if !found.contains(ip) {
                        found.push(*ip);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Adds `address/prefix` to the link; already present is fine.
    pub async fn add_address(&self, link: &Link, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
        match self
            .handle
            .address()
            .add(link.index, IpAddr::V4(address), prefix)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(netlink_error(&format!("adding {address}/{prefix}"), e)),
        }
    }

    /// Removes `address` from the link; already absent is fine.
    pub async fn remove_address(&self, link: &Link, address: Ipv4Addr) -> io::Result<()> {
        let mut messages = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.index)
            .execute();
        while let Some(message) = messages
            .try_next()
            .await
            .map_err(|e| netlink_error("listing addresses", e))?
        {
            let ours = message
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == address));
            if ours {
                match self.handle.address().del(message).execute().await {
                    Ok(()) => {}
                    Err(rtnetlink::Error::NetlinkError(e))
                        if e.raw_code() == -libc::EADDRNOTAVAIL =>
                    {
                        continue
                    }
                    Err(e) => return Err(netlink_error(&format!("removing {address}"), e)),
                }
            }
        }
        Ok(())
    }
}

/// The raw socket advertisements are sent and received on. A raw IPv4 socket is a
/// datagram socket, so tokio's `UdpSocket` drives it (its `recv`/`send_to` are plain
/// `recvfrom`/`sendto`).
pub struct VrrpSocket {
    socket: tokio::net::UdpSocket,
}

impl VrrpSocket {
    /// Opens a raw protocol-112 socket bound to the link, member of 224.0.0.18 there.
    pub fn open(link: &Link, multicast: bool) -> io::Result<VrrpSocket> {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(PROTOCOL))),
        )?;
        socket.bind_device(Some(link.name.as_bytes()))?;
        socket.set_ttl(u32::from(TTL))?;
        socket.set_multicast_ttl_v4(u32::from(TTL))?;
        // Internetwork control, as keepalived: advertisements go before bulk traffic.
        socket.set_tos(0xc0)?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_multicast_if_v4(&link.primary_ip)?;
        if multicast {
            socket.join_multicast_v4_n(
                &MULTICAST_GROUP,
                &socket2::InterfaceIndexOrAddress::Index(link.index),
            )?;
        }
        socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
        Ok(VrrpSocket { socket })
    }

    /// The next datagram (IPv4 header included).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.recv(buf).await
    }

    pub fn send(&self, message: &[u8], destination: Ipv4Addr) -> io::Result<()> {
        let to = SocketAddr::V4(SocketAddrV4::new(destination, 0));
        self.socket.try_send_to(message, to).map(|_| ())
    }
}

/// The gratuitous ARP for `address` from `mac`: a broadcast ARP *request* whose sender and
/// target address are both `address` (an RFC 5227 announcement, as keepalived sends).
/// Linux treats such a request as gratuitous and lets it override a neighbour entry at once;
/// a reply counts as gratuitous only if its target MAC equals the sender's, and otherwise
/// is ignored within `locktime` of the entry's last change — which cost clients seconds.
pub fn gratuitous_arp_frame(mac: [u8; 6], address: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]); // destination: broadcast
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    frame.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]); // Ethernet, IPv4, sizes
    frame.extend_from_slice(&[0x00, 0x01]); // request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&address.octets());
    frame.extend_from_slice(&[0x00; 6]); // target MAC: unknown, as RFC 5227 says
    frame.extend_from_slice(&address.octets());
    frame
}

const ETH_P_ARP: u16 = 0x0806;

/// Broadcasts a gratuitous ARP for `address` from the link's MAC, as keepalived does on
/// becoming master: neighbours and switches update their tables at once instead of waiting
/// for their entries to expire.
pub fn gratuitous_arp(link: &Link, address: Ipv4Addr) -> io::Result<()> {
    let frame = gratuitous_arp_frame(link.mac, address);

    // SAFETY: plain socket(2) call; the descriptor is owned by `socket` below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ARP.to_be();
    addr.sll_ifindex = i32::try_from(link.index).unwrap_or(0);
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and address outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_arp_is_an_announcement_request() {
        let mac = [2, 0, 0, 0, 0, 1];
        let frame = gratuitous_arp_frame(mac, Ipv4Addr::new(10, 9, 0, 100));
        assert_eq!(frame.len(), 42);
        assert_eq!(&frame[..6], &[0xff; 6]);
        assert_eq!(&frame[6..12], &mac);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[20..22], &[0, 1], "ARP request");
        assert_eq!(&frame[22..28], &mac);
        // Sender and target protocol address are both the virtual address.
        assert_eq!(&frame[28..32], &[10, 9, 0, 100]);
        assert_eq!(&frame[32..38], &[0; 6]);
        assert_eq!(&frame[38..42], &[10, 9, 0, 100]);
    }
}
