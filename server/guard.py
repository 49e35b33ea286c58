"""Who may talk to the server and which files it may read: source networks, model roots, and
logging that a flood cannot turn into a full disk."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass
class _Repeat:
    since: float  # start of the current window
    count: int = 0  # repeats counted (not logged) in it


class RateLimitedLog:
    """Logs warnings without flooding the log.

    A warning whose text equals one logged less than ``window`` seconds ago is only counted; when
    the window ends the count is logged once (``<text> (repeated N times in the last 5 s)``) and
    a new window starts while the repeats go on. The server's warnings name the client, so this
    limits repeated identical warnings from one client to one line every ``window`` seconds.
    On top of that at most ``per_second`` lines a second pass on average (bursts of ``burst``);
    what that drops is counted and reported with the next line let through. At most ``max_texts``
    texts are tracked (the oldest is reported and forgotten first).

    Call :meth:`flush` every second or so, so that the counts of a flood that stopped are logged.
    ``clock`` gives the time in seconds (tests pass a fake one).
    """

    def __init__(self, logger: logging.Logger, per_second: float = 5.0, burst: int = 20,
                 window: float = 5.0, max_texts: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.rate = per_second
        self.burst = float(burst)
        self.window = window
        self.max_texts = max_texts
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._dropped = 0
        self._repeats: OrderedDict[str, _Repeat] = OrderedDict()  # oldest window first
        self._lock = threading.Lock()

    def warning(self, msg: str, *args: object, exc_info: bool = False) -> None:
        """Log (or count) one warning (``msg % args``, like :meth:`logging.Logger.warning`)."""
        text = msg % args if args else msg
        with self._lock:
            now = self._clock()
            lines = self._due(now)
            rep = self._repeats.get(text)
            if rep is not None:
                rep.count += 1
            else:
                self._repeats[text] = _Repeat(now)
                if len(self._repeats) > self.max_texts:
                    old, old_rep = self._repeats.popitem(last=False)
                    if old_rep.count:
                        lines.append(self._summary(old, old_rep))
                lines.append(text)
            lines = self._admit(lines, now)
        for line in lines:
            self.logger.warning("%s", line, exc_info=exc_info and line == text)

    def flush(self) -> None:
        """Log the repeat counts of the windows that have ended."""
        with self._lock:
            now = self._clock()
            lines = self._admit(self._due(now), now)
        for line in lines:
            self.logger.warning("%s", line)

    def _due(self, now: float) -> list[str]:
        """Summaries of the windows that ended; texts still repeating start a new window."""
        lines: list[str] = []
        while self._repeats:
            text, rep = next(iter(self._repeats.items()))
            if now - rep.since < self.window:
                break
            del self._repeats[text]
            if rep.count:
                lines.append(self._summary(text, rep))
                self._repeats[text] = _Repeat(now)
        return lines

    def _summary(self, text: str, rep: _Repeat) -> str:
        return f"{text} (repeated {rep.count} times in the last {self.window:g} s)"

    def _admit(self, lines: list[str], now: float) -> list[str]:
        """The lines the rate limit lets through (with a note of what it dropped before)."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        out: list[str] = []
        for line in lines:
            if self._tokens < 1.0:
                self._dropped += 1
                continue
            self._tokens -= 1.0
            if self._dropped:
                out.append(f"({self._dropped} similar messages suppressed)")
                self._dropped = 0
            out.append(line)
        return out
