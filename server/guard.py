"""Who may talk to the server and which files it may read: source networks, model roots, and
rate-limited logging of refusals."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ganspace.errors import InputError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REFUSED_SUFFIXES = (".pickle", ".pkl")


def parse_networks(cidrs: Sequence[str]) -> list[Network]:
    """``--allow`` values as networks; InputError naming a malformed one."""
    nets: list[Network] = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c, strict=False))
        except ValueError as exc:
            raise InputError(f"--allow {c}: not a network in CIDR notation ({exc})") from None
    return nets


class SourceFilter:
    """Loopback sources are always allowed; others only inside the ``--allow`` networks."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = list(networks)
        self._cache: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        """Whether packets from ``host`` are handled."""
        ok = self._cache.get(host)
        if ok is None:
            try:
                ip = ipaddress.ip_address(host.split("%")[0])
            except ValueError:
                ok = False
            else:
                mapped = getattr(ip, "ipv4_mapped", None)
                ip = mapped or ip
                ok = ip.is_loopback or any(ip in n for n in self.networks)
            if len(self._cache) < 4096:
                self._cache[host] = ok
        return ok


class PathGuard:
    """Resolves client-given paths and refuses anything outside the model roots."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = [Path(r).resolve() for r in roots]

    def resolve(self, text: str) -> Path:
        """The real path (symlinks resolved) of an existing file or folder inside a root.

        Raises:
            InputError: outside every root, missing, or a pickle.
        """
        if not self.roots:
            raise InputError("this server has no model roots (start it with --model-root DIR)")
        p = Path(text).expanduser()
        if not p.is_absolute():
            p = self.roots[0] / p
        if p.name.lower().endswith(REFUSED_SUFFIXES):
            raise InputError("pickles are never loaded over the network; convert them with "
                             "`ganspacesynth import-pca`")
        try:
            real = p.resolve(strict=True)
        except (OSError, RuntimeError):
            raise InputError(f"{text}: no such file or folder") from None
        if not any(real.is_relative_to(r) for r in self.roots):
            raise InputError(f"{text}: outside the server's model roots")
        if real.name.lower().endswith(REFUSED_SUFFIXES):
            raise InputError("pickles are never loaded over the network")
        return real


class RateLimitedLog:
    """Logs warnings at most ``per_second`` a second on average (bursts of ``burst``); counts
    what it drops and reports the count with the next line it lets through."""

    def __init__(self, logger: logging.Logger, per_second: float = 5.0, burst: int = 20) -> None:
        self.logger = logger
        self.rate = per_second
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._dropped = 0
        self._lock = threading.Lock()

    def warning(self, msg: str, *args: object) -> None:
        """Log (or count) one warning."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1.0:
                self._dropped += 1
                return
            self._tokens -= 1.0
            dropped, self._dropped = self._dropped, 0
        if dropped:
            self.logger.warning("(%d similar messages suppressed)", dropped)
        self.logger.warning(msg, *args)
