//! Passing listening sockets from a running process to its replacement (`-x SOCKET`, the
//! old process's stats socket with `expose-fd listeners`), as HAProxy does for binary
//! upgrades: the new process listens on the very same sockets, so connections waiting in
//! their queues are never reset when the old process lets go.
//!
//! The exchange, over a unix stats socket at level admin: the client sends `_getsocks`; the
//! answer is one message carrying the descriptors (SCM_RIGHTS) and, as its bytes, one line
//! per descriptor with the address it listens on, then an empty line. The format is
//! Switchyard's own (HAProxy's binary `_getsocks` layout is not reproduced).

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The command asking for the listening sockets.
pub const GETSOCKS: &str = "_getsocks";

/// Linux accepts at most this many descriptors in one message (SCM_MAX_FD).
const MAX_FDS: usize = 253;

/// Asks the process behind `path` for its listening sockets.
pub fn fetch(path: &Path) -> anyhow::Result<Vec<(SocketAddr, socket2::Socket)>> {
    let mut stream = UnixStream::connect(path)
        .with_context(|| format!("-x {}: cannot connect", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{GETSOCKS}\n").as_bytes())?;
    let mut text = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let (read, received) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .with_context(|| format!("-x {}: receiving the sockets", path.display()))?;
            let mut received = Vec::new();
            for cmsg in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(raw) = cmsg {
                    // SAFETY: the kernel just installed these descriptors in this process;
                    // nothing else owns them.
                    received.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            (msg.bytes, received)
        };
        fds.extend(received);
        text.extend_from_slice(&buf[..read]);
        if read == 0 || text.ends_with(b"\n\n") || text == b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&text);
    if text == "\n" {
        return Ok(Vec::new());
    }
    if !text.ends_with("\n\n") {
        // Anything else is the CLI's answer: an error such as "Permission denied".
        let mut rest = String::new();
        let _ = stream.read_to_string(&mut rest);
        bail!(
            "-x {}: the process did not hand its sockets over: {}{}",
            path.display(),
            text.trim(),
            rest.trim()
        );
    }
    let addresses: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    if addresses.len() != fds.len() {
        bail!(
            "-x {}: {} addresses for {} sockets",
            path.display(),
            addresses.len(),
            fds.len()
        );
    }
    addresses
        .into_iter()
        .zip(fds)
        .map(|(address, fd)| {
            let address: SocketAddr = address
                .parse()
                .with_context(|| format!("-x {}: bad address '{address}'", path.display()))?;
            Ok((address, socket2::Socket::from(fd)))
        })
        .collect()
}

/// Sends `sockets` (address, descriptor) over `stream` in the format [`fetch`] reads:
/// messages of at most [`MAX_FDS`] descriptors with their address lines, the last one
/// ending with the empty line.
pub fn send(stream: RawFd, sockets: &[(SocketAddr, RawFd)]) -> std::io::Result<()> {
    let chunks: Vec<&[(SocketAddr, RawFd)]> = if sockets.is_empty() {
        vec![&[]]
    } else {
        sockets.chunks(MAX_FDS).collect()
    };
    let last = chunks.len() - 1;
    for (n, chunk) in chunks.iter().enumerate() {
        let mut text: String = chunk.iter().map(|(a, _)| format!("{a}\n")).collect();
        if n == last {
            text.push('\n');
        }
        let fds: Vec<RawFd> = chunk.iter().map(|(_, fd)| *fd).collect();
        let iov = [IoSlice::new(text.as_bytes())];
        let rights = [ControlMessage::ScmRights(&fds)];
        let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        sendmsg::<()>(stream, &iov, control, MsgFlags::empty(), None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_cross_a_unix_socket_and_keep_listening() {
        let dir = std::env::temp_dir().join(format!("sy-handover-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("admin.sock");
        let _ = std::fs::remove_file(&path);
        let server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let offered: Vec<(SocketAddr, RawFd)> = listeners
            .iter()
            .map(|l| (l.local_addr().unwrap(), l.as_raw_fd()))
            .collect();
        let serving = std::thread::spawn(move || {
            let (mut conn, _) = server.accept().unwrap();
            let mut line = [0u8; 10];
            conn.read_exact(&mut line).unwrap();
            assert_eq!(&line, b"_getsocks\n");
            send(conn.as_raw_fd(), &offered).unwrap();
        });
        let received = fetch(&path).unwrap();
        serving.join().unwrap();
        assert_eq!(received.len(), 3);
        for ((address, socket), original) in received.iter().zip(&listeners) {
            assert_eq!(*address, original.local_addr().unwrap());
            // The same socket: a connection queued on it is accepted through the copy.
            let _client = std::net::TcpStream::connect(address).unwrap();
            let accepted: std::net::TcpListener = socket.try_clone().unwrap().into();
            accepted.accept().unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
