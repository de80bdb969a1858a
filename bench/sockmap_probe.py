#!/usr/bin/env python3
"""How much would forwarding in the kernel save? A measurement probe, not a proxy.

Listens on 127.0.0.1:PORT; for each accepted client it connects to TARGET, puts both sockets
in a BPF sockmap whose `sk_skb` verdict program sends what one socket receives out of the
other (bpf_sk_redirect_map, egress), and then only waits for the client to close. No byte
passes through user space; there are no timeouts, no counters, no half-close handling. It
answers one question for docs/performance.md ("pgbench -S keeps ..."): what one loopback hop
costs when the proxy's process is not woken at all.

usage: sockmap_probe.py PORT TARGET_HOST:TARGET_PORT [MAX_PAIRS]   (root: loads a BPF program)
"""
import ctypes
import os
import select
import socket
import struct
import sys

SYS_BPF = 321  # x86_64
BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_PROG_LOAD, BPF_PROG_ATTACH = 0, 2, 3, 5, 8
BPF_MAP_TYPE_SOCKHASH = 18
BPF_PROG_TYPE_SK_SKB = 14
BPF_SK_SKB_VERDICT = 38
FUNC_SK_REDIRECT_HASH = 72  # bpf_sk_redirect_hash(skb, map, key*, flags)
SK_SKB_REMOTE_PORT = 132  # offsetof(struct __sk_buff, remote_port): be16 in the upper half
SK_SKB_LOCAL_PORT = 136  # host order

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    ret = libc.syscall(SYS_BPF, cmd, buf, 128)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def verdict_program(map_fd):
    # The sockhash is keyed by (local port << 16 | remote port) of each socket, as the kernel
    # sees the socket that received the data; its value is the *other* socket of the pair.
    # key = local_port << 16 | ntohs(remote_port)
    prog = b"".join([
        insn(0xBF, 6, 1),                                 # r6 = r1 (skb)
        insn(0x61, 2, 1, SK_SKB_LOCAL_PORT),              # r2 = skb->local_port
        insn(0x67, 2, imm=16),                            # r2 <<= 16
        insn(0x61, 3, 1, SK_SKB_REMOTE_PORT),             # r3 = skb->remote_port: be16 << 16
        insn(0x77, 3, imm=16),                            # r3 >>= 16
        insn(0xDC, 3, imm=16),                            # r3 = be16 -> host (a swap here)
        insn(0x4F, 2, 3),                                 # r2 |= r3
        insn(0x63, 10, 2, -4),                            # *(u32 *)(fp - 4) = r2
        insn(0xBF, 3, 10),                                # r3 = fp
        insn(0x07, 3, imm=-4),                            # r3 -= 4 (key pointer)
        insn(0x18, 2, 1, imm=map_fd), insn(0, imm=0),     # r2 = map (ld_imm64, pseudo map fd)
        insn(0xBF, 1, 6),                                 # r1 = skb
        insn(0xB7, 4, imm=0),                             # r4 = 0: out of the other socket
        insn(0x85, imm=FUNC_SK_REDIRECT_HASH),            # call
        insn(0x95),                                       # exit
    ])
    return prog


def main():
    port = int(sys.argv[1])
    host, tport = sys.argv[2].rsplit(":", 1)
    max_pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 1024

    map_fd = bpf(BPF_MAP_CREATE, struct.pack("<IIIII", BPF_MAP_TYPE_SOCKHASH, 4, 8, 2 * max_pairs, 0))
    prog = verdict_program(map_fd)
    insns = ctypes.create_string_buffer(prog, len(prog))
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack(
        "<IIQQIIQII16sII",
        BPF_PROG_TYPE_SK_SKB, len(prog) // 8, ctypes.addressof(insns), ctypes.addressof(license),
        1, len(log), ctypes.addressof(log), 0, 0, b"sockmap_probe", 0, BPF_SK_SKB_VERDICT,
    )
    try:
        prog_fd = bpf(BPF_PROG_LOAD, attr)
    except OSError:
        print(log.value.decode(errors="replace"), file=sys.stderr)
        raise
    bpf(BPF_PROG_ATTACH, struct.pack("<IIII", map_fd, prog_fd, BPF_SK_SKB_VERDICT, 0))

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(512)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    pairs = {}

    def key(sock):
        local, remote = sock.getsockname()[1], sock.getpeername()[1]
        return struct.pack("<I", (local << 16) | remote)

    def put(sock, other):
        k = ctypes.create_string_buffer(key(sock), 4)
        v = ctypes.create_string_buffer(struct.pack("<Q", other.fileno()), 8)
        bpf(BPF_MAP_UPDATE_ELEM, struct.pack("<IIQQQ", map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))

    print(f"sockmap_probe: 127.0.0.1:{port} -> {host}:{tport}", flush=True)
    while True:
        for fd, _ in poller.poll():
            if fd == listener.fileno():
                client, _ = listener.accept()
                server = socket.create_connection((host, int(tport)))
                for s in (client, server):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # The value is the socket to send out of: data the client's socket receives
                # leaves through the server's, and back.
                put(client, server)
                put(server, client)
                # What the client sent before its socket was in the map (a PostgreSQL
                # client's first message) waits in its ordinary receive queue: pass it on.
                # (A client that sends more before an answer could be reordered here; the
                # probe's clients do not.)
                try:
                    early = client.recv(65536, socket.MSG_DONTWAIT)
                    if early:
                        server.sendall(early)
                except BlockingIOError:
                    pass
                pairs[client.fileno()] = (client, server)
                poller.register(client.fileno(), select.EPOLLRDHUP)
            else:
                # The client hung up (its data never reaches user space): close both.
                client, server = pairs.pop(fd)
                poller.unregister(fd)
                client.close()
                server.close()


if __name__ == "__main__":
    main()
