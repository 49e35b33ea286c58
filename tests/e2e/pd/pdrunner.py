"""Drive real headless Pure Data over OSC for the patch tests and the patch benchmarks.

`PdSession` starts `pd -nogui -nosound ...` with tests/e2e/pd/harness.pd plus the patches under
test, sends harness commands (`/send <receive-name> args...`, `/capture`, `/ff`, `/writecap`,
`/watch`, `/ping`) and collects what the harness sends back (`/w <receive-name> args...` for
watched names).
Pd's stderr is collected; `errors()` lists the lines a test must fail on.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness.pd"
PATCHES = HERE.parents[2] / "patches"

# Pd's own complaints ("error: ...", "... couldn't create"); the patches print the server's /fail
# replies with the prefix "gss-server:" (expected in tests that provoke a failure).
ERROR_RE = re.compile(r"couldn't create|\berror\b|bad arguments|inlet: expected|stack overflow",
                      re.I)
SERVER_PRINT = "gss-server:"


def pd_binary() -> str:
    """Path of `pd`; raises RuntimeError with a clear message when Pure Data is missing."""
    exe = shutil.which(os.environ.get("PD", "pd"))
    if not exe:
        raise RuntimeError("Pure Data (`pd`) is not installed: apt-get install puredata-core "
                           "(or set $PD to the pd binary); the patch tests need real Pd")
    return exe


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_udp_port() -> int:
    """A port free for both UDP and TCP (the server may bind either)."""
    for _ in range(50):
        port = free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def osc_bytes(address: str, *args) -> bytes:
    b = OscMessageBuilder(address=address)
    for a in args:
        if isinstance(a, bool):
            a = int(a)
        if isinstance(a, float):
            b.add_arg(a, "f")
        elif isinstance(a, int):
            b.add_arg(float(a), "f")   # Pd's [oscparse] turns ints into floats anyway
        else:
            b.add_arg(str(a), "s")
    return b.build().dgram


class PdSession:
    """One headless Pd running the harness plus `patches`; use as a context manager."""

    def __init__(self, patches: list[Path], sends: list[str] | None = None,
                 samplerate: int | None = None, cwd: Path | None = None,
                 watch: list[str] | None = None):
        self.patches = [Path(p).resolve() for p in patches]
        self.sends = list(sends or [])
        self.initial_watch = list(watch or [])
        self.samplerate = samplerate
        self.cwd = cwd
        self._cond = threading.Condition()
        self.log: list[tuple[float, str, tuple]] = []   # every message received, with arrival time
        self.stderr_lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> PdSession:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        exe = pd_binary()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.test_port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.pd_port = free_udp_port()
        cmd = [exe, "-nogui", "-nosound", "-nomidi", "-noprefs", "-nrt", "-stderr",
               "-sleepgrain", "1"]
        if self.samplerate:
            cmd += ["-r", str(self.samplerate)]
        cmd += ["-send", f"harness-cfg {self.pd_port} {self.test_port}"]
        for name in self.initial_watch:   # watchers exist before the patches connect ([del 0])
            cmd += ["-send", f"harness-watch-add {name}"]
        for s in self.sends:
            cmd += ["-send", s]
        cmd += ["-open", str(HARNESS)]
        for p in self.patches:
            cmd += ["-open", str(p)]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=self.cwd)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        threading.Thread(target=self._read_osc, daemon=True).start()
        # wait until the harness answers
        deadline = time.monotonic() + 15
        while True:
            m = self.mark()
            self.send("/ping")
            try:
                self.wait(lambda a, args: a == "/pong", timeout=0.3, since=m)
                break
            except (TimeoutError, RuntimeError) as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("Pd did not start:\n" + "\n".join(self.stderr_lines)) \
                        from exc

    def close(self) -> None:
        self._closing = True
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        try:
            self.sock.close()
        except Exception:
            pass

    def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def _read_osc(self) -> None:
        while not self._closing:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                m = OscMessage(data)
            except Exception:
                continue
            item = (time.perf_counter(), m.address, tuple(m.params))
            with self._cond:
                self.log.append(item)
                self._cond.notify_all()

    # -- commands ----------------------------------------------------------------------------
    def send(self, address: str, *args) -> float:
        """Send one OSC message to the harness; returns the perf_counter time it left."""
        data = osc_bytes(address, *args)
        t = time.perf_counter()
        self.sock.sendto(data, ("127.0.0.1", self.pd_port))
        return t

    def bundle(self, *messages: tuple) -> float:
        """Send harness commands ``(address, args...)`` in one OSC bundle: Pd handles them in the
        same logical time (e.g. ``/capture`` together with a note). Returns the send time."""
        b = OscBundleBuilder(IMMEDIATELY)
        for m in messages:
            b.add_content(OscMessage(osc_bytes(*m)))
        t = time.perf_counter()
        self.sock.sendto(b.build().dgram, ("127.0.0.1", self.pd_port))
        return t

    def to(self, name: str, *args) -> float:
        """`[send name]` args inside Pd (a bang when no args)."""
        return self.send("/send", name, *args)

    def mark(self) -> int:
        """Position in the log: pass it as `since` to wait only for later messages."""
        with self._cond:
            return len(self.log)

    def wait(self, pred: Callable[[str, tuple], bool], timeout: float = 10.0,
             what: str = "message", since: int = 0) -> tuple[float, str, tuple]:
        """First message of the log from `since` on matching pred(address, args)."""
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.log):
                    item = self.log[i]
                    i += 1
                    if pred(item[1], item[2]):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}; "
                                       f"recent: {[x[1:] for x in self.log[-8:]]}\n"
                                       f"pd stderr tail: {self.stderr_lines[-15:]}")
                if self.proc and self.proc.poll() is not None:
                    raise RuntimeError("Pd exited:\n" + "\n".join(self.stderr_lines[-30:]))
                self._cond.wait(min(left, 0.2))

    def watch(self, *names: str) -> None:
        for n in names:
            self.send("/watch", n)
        self.sync()

    def wait_watch(self, name: str, pred: Callable[[tuple], bool] = lambda a: True,
                   timeout: float = 10.0, since: int = 0) -> tuple:
        """Wait for `/w name args` from a watched receive name; returns args."""
        item = self.wait(lambda a, args: a == "/w" and args and args[0] == name and pred(args[1:]),
                         timeout=timeout, what=f"{name} (watched)", since=since)
        return item[2][1:]

    def wait_watch_t(self, name: str, pred: Callable[[tuple], bool] = lambda a: True,
                     timeout: float = 10.0, since: int = 0) -> tuple[float, tuple]:
        """Like wait_watch, with the perf_counter arrival time."""
        item = self.wait(lambda a, args: a == "/w" and args and args[0] == name and pred(args[1:]),
                         timeout=timeout, what=f"{name} (watched)", since=since)
        return item[0], item[2][1:]

    def _command(self, address: str, reply: str, *args, timeout: float = 10.0) -> tuple:
        m = self.mark()
        self.send(address, *args)
        return self.wait(lambda a, _: a == reply, timeout=timeout, what=reply, since=m)[2]

    def sync(self, timeout: float = 5.0) -> None:
        """Round trip through the harness: everything sent before has been handled by Pd."""
        self._command("/ping", "/pong", timeout=timeout)

    def capture(self, signal: str, frames: int) -> None:
        """Record [send~ signal] into the harness' capture array from the next DSP block on."""
        self._command("/capture", "/captured", signal, frames, timeout=5)

    def fast_forward(self, ms: float) -> None:
        """Let Pd compute `ms` of logical time (audio) as fast as it can."""
        self._command("/ff", "/ff", ms, timeout=30)

    def write_capture(self, path: Path) -> int:
        return int(self._command("/writecap", "/written", str(path), timeout=10)[0])

    def errors(self) -> list[str]:
        """Pd's error lines (not the server's /fail replies the patches print)."""
        return [ln for ln in self.stderr_lines
                if ERROR_RE.search(ln) and not ln.startswith(SERVER_PRINT)]

    def seen(self, name: str, pred: Callable[[tuple], bool] = lambda a: True) -> list[tuple]:
        """Every `/w name args` received so far whose args match."""
        return [m[2][1:] for m in self.log
                if m[1] == "/w" and m[2] and m[2][0] == name and pred(m[2][1:])]
