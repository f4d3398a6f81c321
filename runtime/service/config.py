"""The service's settings: worker threads, queue bound, largest frame and the optional token."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from cellpoint.runtime.errors import OptionError

DEFAULT_PORT = 8765
DEFAULT_MAX_FRAME_MB = 512.0


@dataclass(frozen=True)
class ServiceConfig:
    """workers: frames segmented at once (threads sharing one Segmenter). queue: frames admitted beyond those
    (waiting for a worker); a request arriving when workers + queue frames are admitted gets 503.
    max_frame_bytes: the largest request body, and the largest decoded frame (bytes); larger gets 413.
    token: when set, /model and /segment need `Authorization: Bearer <token>` (401 otherwise)."""
    workers: int = 2
    queue: int = 4
    max_frame_bytes: int = int(DEFAULT_MAX_FRAME_MB * 2 ** 20)
    token: str | None = None

    def __post_init__(self):
        if self.workers < 1:
            raise OptionError(f"workers must be at least 1, got {self.workers}")
        if self.queue < 0:
            raise OptionError(f"queue must be 0 or more, got {self.queue}")
        if self.max_frame_bytes < 1:
            raise OptionError(f"max frame size must be positive, got {self.max_frame_bytes} bytes")

    @property
    def capacity(self) -> int:
        """Requests to /segment admitted at once (being segmented or waiting)."""
        return self.workers + self.queue


def is_loopback(host: str) -> bool:
    """Whether binding to `host` (a name or an address) accepts connections from this machine only."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:  # a host name: loopback only if every address it resolves to is
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
