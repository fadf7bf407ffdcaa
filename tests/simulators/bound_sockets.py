"""The TCP/UDP sockets a process holds, and where they are bound, read from /proc (no psutil).

/proc/<pid>/net/{tcp,tcp6,udp,udp6} list every socket of the network namespace with its
inode; /proc/<pid>/fd links `socket:[inode]` say which of them the process holds.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

TCP_LISTEN = "0A"


@dataclass(frozen=True)
class BoundSocket:
    """One socket of the process: protocol, local address and port, TCP state, inode."""

    protocol: str
    """"tcp", "tcp6", "udp" or "udp6"."""
    host: str
    port: int
    state: str
    inode: int

    @property
    def loopback(self) -> bool:
        address = ipaddress.ip_address(self.host)
        mapped = getattr(address, "ipv4_mapped", None)
        return (mapped or address).is_loopback

    @property
    def udp(self) -> bool:
        return self.protocol.startswith("udp")

    def __str__(self) -> str:
        return f"{self.protocol} {self.host}:{self.port} (state {self.state}, inode {self.inode})"


def _address(hex_address: str) -> tuple[str, int]:
    """`0100007F:83CD` → ("127.0.0.1", 33741); IPv6 as four host-order 32-bit words."""
    hex_host, hex_port = hex_address.split(":")
    raw = bytes.fromhex(hex_host)
    host_bytes = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(host_bytes)), int(hex_port, 16)


def socket_inodes(pid: int | str = "self") -> set[int]:
    """Inodes of the sockets among the process's open file descriptors."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def bound_sockets(pid: int | str = "self") -> list[BoundSocket]:
    """Every TCP and UDP socket (IPv4 and IPv6) the process holds open."""
    inodes = socket_inodes(pid)
    found = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/{pid}/net/{protocol}") as table:
            next(table)  # header
            for line in table:
                fields = line.split()
                inode = int(fields[9])
                if inode in inodes:
                    host, port = _address(fields[1])
                    found.append(BoundSocket(protocol, host, port, fields[3], inode))
    return found
