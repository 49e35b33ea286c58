"""Generation jobs and their bounded queue: latest-wins tags, cancellation, busy refusal.

A job is everything a synthesis or hallucination command needs, captured when the command
arrives (model, latents, coefficients, settings, delivery mode), plus a ``run`` function the
generation worker calls. A job is *alive* from submission until its reply has been sent; the
number of alive jobs is bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ganspace_server.session import Session


class Busy(Exception):
    """The queue is full."""


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
        cancel: set when cancelled or superseded (``reason`` says which).
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
        """Cancel (or supersede) this job."""
        if not self.cancel.is_set():
            self.reason = reason
            self.cancel.set()


class JobQueue:
    """FIFO of jobs waiting for the generation worker, with a bound on alive jobs."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: deque[Job] = deque()
        self._alive: dict[int, Job] = {}
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        """Alive jobs (waiting, running or being delivered)."""
        with self._cond:
            return len(self._alive)

    def submit(self, job: Job) -> list[Job]:
        """Queue a job; return the waiting jobs it superseded (removed from the queue; the caller
        answers them). Alive jobs with the same tag that already started are stopped.

        Raises:
            Busy: ``limit`` jobs are alive.
        """
        with self._cond:
            dropped: list[Job] = []
            if job.tag is not None:
                for j in list(self._alive.values()):
                    if j.session is job.session and j.tag == job.tag:
                        if j in self._waiting:
                            self._waiting.remove(j)
                            del self._alive[j.id]
                            j.stop("superseded")
                            dropped.append(j)
                        else:
                            j.stop("superseded")
            if len(self._alive) >= self.limit:
                raise Busy
            self._alive[job.id] = job
            self._waiting.append(job)
            self._cond.notify()
            return dropped

    def take(self, timeout: float) -> Job | None:
        """The next waiting job, or None after ``timeout`` seconds or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting or self._closed, timeout)
            return self._waiting.popleft() if self._waiting and not self._closed else None

    def finish(self, job: Job) -> None:
        """The job's reply has been sent."""
        with self._cond:
            self._alive.pop(job.id, None)

    def cancel(self, session: Session, job_id: int) -> tuple[list[Job], int]:
        """Stop this client's jobs (``job_id`` 0: all). Returns the waiting ones removed from the
        queue (the caller answers them) and how many jobs were stopped in all."""
        with self._cond:
            removed: list[Job] = []
            count = 0
            for j in list(self._alive.values()):
                if j.session is not session or (job_id and j.id != job_id):
                    continue
                if j.cancel.is_set():
                    continue
                j.stop("cancelled")
                count += 1
                if j in self._waiting:
                    self._waiting.remove(j)
                    del self._alive[j.id]
                    removed.append(j)
            return removed, count

    def close(self) -> None:
        """Wake the worker for shutdown."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
