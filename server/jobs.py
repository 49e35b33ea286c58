"""Generation jobs and their fair queue: one lane per client, least recently served first.

A job is everything a synthesis or hallucination command needs, captured when the command
arrives (model, latents, coefficients, settings, delivery mode), plus a ``run`` function the
generation worker calls. A job is *alive* from submission until its reply has been sent.

Each client has its own lane of waiting jobs. The worker takes the next job from the lane whose
client was served least recently (a client that has not been served for the longest goes first),
so one client's burst delays another client's next job by at most the job being rendered. Two
bounds protect the server: alive jobs per client (a full lane answers that client ``busy``) and
alive jobs in all (``busy: ...`` with the reason).

A finished job leaves a :class:`JobTiming` (wait, generation and delivery times) on the server.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ganspace_server.session import Address, Session


class Busy(Exception):
    """A queue bound was reached; the text is the ``/fail`` reason."""


@dataclass
class Result:
    """What a job produced: named buffers, their sample rate, and the values of its /done."""

    buffers: list[tuple[str, np.ndarray]]
    sample_rate: int
    done: tuple[int | float | str, ...]


@dataclass(eq=False)
class Job:
    """One queued command.

    Attributes:
        id: job id (in /progress, for /cancel).
        session: the client.
        cmd: the command's address (for /done and /fail).
        run: does the work; gets the job (for its cancel event and progress) and returns a Result.
        delivery: the client's delivery mode when the command arrived.
        total: sounds to make (for /progress; 0 sends no progress).
        tag: /latest tag or None.
        cancel: set when cancelled, superseded or dropped (``reason`` says which).
        queued_at: ``time.perf_counter()`` at submission.
    """

    id: int
    session: Session
    cmd: str
    run: Callable[[Job], Result]
    delivery: str
    total: int = 0
    tag: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = "cancelled"
    queued_at: float = field(default_factory=time.perf_counter)

    def stop(self, reason: str) -> None:
        """Cancel (or supersede, or drop) this job."""
        if not self.cancel.is_set():
            self.reason = reason
            self.cancel.set()


@dataclass(frozen=True)
class JobTiming:
    """One finished job: its client, the first value of its ``/done`` ("" when it failed), when
    the worker started it (``time.perf_counter()``) and how long it waited, generated and was
    delivered (seconds). Recorded just before its ``/done`` or ``/fail`` is sent."""

    job: int
    cmd: str
    client: Address
    label: str
    started: float
    queued: float
    generate: float
    deliver: float



@dataclass(eq=False)
class _Lane:
    """One client's jobs: waiting ones in arrival order, and started ones until their reply."""

    session: Session
    waiting: deque[Job] = field(default_factory=deque)
    started: dict[int, Job] = field(default_factory=dict)

    @property
    def alive(self) -> int:
        return len(self.waiting) + len(self.started)


class JobQueue:
    """Jobs waiting for the generation worker, one lane per client, taken least recently served
    first, with bounds on alive jobs per client and in all.

    Args:
        per_client: alive jobs one client may have (the next is refused ``busy``).
        total: alive jobs of all clients together (the next is refused ``busy: ...``).
    """

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._lanes: dict[int, _Lane] = {}  # id(session) -> lane; a lane exists while jobs live
        self._alive = 0
        self._waiting = 0
        self._served = 0  # counts jobs taken; Session.served holds its value at the last take
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        """Alive jobs (waiting, running or being delivered) of all clients."""
        with self._cond:
            return self._alive

    def alive(self, session: Session) -> int:
        """Alive jobs of one client."""
        with self._cond:
            lane = self._lanes.get(id(session))
            return lane.alive if lane else 0

    def submit(self, job: Job) -> list[Job]:
        """Queue a job; return the waiting jobs of the same client and tag it superseded (removed
        from the queue; the caller answers them). Started jobs with that tag are stopped.

        Raises:
            Busy: the client has ``per_client`` jobs alive, or all clients ``total``.
        """
        with self._cond:
            lane = self._lanes.get(id(job.session))
            if lane is None:
                lane = self._lanes[id(job.session)] = _Lane(job.session)
            dropped: list[Job] = []
            if job.tag is not None:
                for j in [j for j in lane.waiting if j.tag == job.tag]:
                    self._remove_waiting(lane, j, "superseded")
                    dropped.append(j)
                for j in lane.started.values():
                    if j.tag == job.tag:
                        j.stop("superseded")
            # a superseded job frees its slot, so a tagged job that replaced one is never busy
            if lane.alive >= self.per_client:
                self._forget_if_empty(lane)
                raise Busy("busy")
            if self._alive >= self.total:
                self._forget_if_empty(lane)
                raise Busy(f"busy: the server holds {self._alive} jobs of all its clients "
                           f"(at most {self.total}); try again later")
            lane.waiting.append(job)
            self._alive += 1
            self._waiting += 1
            self._cond.notify()
            return dropped

    def take(self, timeout: float) -> Job | None:
        """The next job of the least recently served client with waiting jobs, or None after
        ``timeout`` seconds or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting > 0 or self._closed, timeout)
            if self._closed or not self._waiting:
                return None
            lane = min((ln for ln in self._lanes.values() if ln.waiting),
                       key=lambda ln: ln.session.served)
            job = lane.waiting.popleft()
            lane.started[job.id] = job
            self._waiting -= 1
            self._served += 1
            lane.session.served = self._served
            return job

    def finish(self, job: Job) -> None:
        """The job's reply has been sent."""
        with self._cond:
            lane = self._lanes.get(id(job.session))
            if lane is not None and lane.started.pop(job.id, None) is not None:
                self._alive -= 1
                self._forget_if_empty(lane)

    def cancel(self, session: Session, job_id: int) -> tuple[list[Job], int]:
        """Stop this client's jobs (``job_id`` 0: all). Returns the waiting ones removed from the
        queue (the caller answers them) and how many jobs were stopped in all."""
        with self._cond:
            lane = self._lanes.get(id(session))
            if lane is None:
                return [], 0
            removed: list[Job] = []
            count = 0
            for j in [*lane.waiting, *lane.started.values()]:
                if (job_id and j.id != job_id) or j.cancel.is_set():
                    continue
                count += 1
                if j.id in lane.started:
                    j.stop("cancelled")
                else:
                    self._remove_waiting(lane, j, "cancelled")
                    removed.append(j)
            self._forget_if_empty(lane)
            return removed, count

    def drop(self, session: Session) -> list[Job]:
        """Remove every waiting job of this client (it is gone); the caller answers them.
        Started jobs go on."""
        with self._cond:
            lane = self._lanes.get(id(session))
            if lane is None:
                return []
            removed = list(lane.waiting)
            for j in removed:
                self._remove_waiting(lane, j, "dropped")
            self._forget_if_empty(lane)
            return removed

    def close(self) -> None:
        """Wake the worker for shutdown."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _remove_waiting(self, lane: _Lane, job: Job, reason: str) -> None:
        lane.waiting.remove(job)
        self._alive -= 1
        self._waiting -= 1
        job.stop(reason)

    def _forget_if_empty(self, lane: _Lane) -> None:
        if not lane.alive:
            self._lanes.pop(id(lane.session), None)
