"""Host names and addresses: the loopback test the server (binding) and the client share.

Kept apart from :mod:`ganspace_server.guard` so that the client imports neither ganspace nor torch.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether a bind address or source address is a loopback address (``localhost`` too)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
