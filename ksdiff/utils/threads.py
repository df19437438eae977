"""Overlap the stages of a streaming pipeline with threads (the rendering pipeline: vertices + normals, the
GL draw, H.264 encoding). numpy, PyAV and the GL draw (called through ctypes, see
:mod:`ksdiff.render.raster_gl`) do their heavy work without the GIL, so a stage in
its own thread runs while the next one works.

- :func:`prefetch` runs a producer ahead of its consumer (bounded queue);
- :class:`Worker` runs a consumer behind its producer (bounded queue), re-raising its error in the caller;
- :func:`torch_threads` runs a block with another number of torch intra-op threads.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

__all__ = ["prefetch", "Worker", "torch_threads"]

_END = object()


class _Aborted(Exception):
    pass


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Yield ``items`` while a background thread computes up to ``depth`` of them ahead.

    An exception in the producer is raised at the point of the consumer's next read; closing the returned
    generator early stops the producer at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for x in items:
                if not put(x):
                    return
            put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(_Failure(e))

    th = threading.Thread(target=run, name="ksdiff-prefetch", daemon=True)
    th.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Failure):
                raise x.error
            yield x
    finally:
        stop.set()
        th.join(timeout=5.0)


class Worker(Generic[T]):
    """Feed items to ``consume`` in a background thread: ``put`` each, then ``close`` (waits, re-raises).

    If ``consume`` fails, the next ``put`` (or ``close``) raises its exception in the caller's thread.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 4, name: str = "ksdiff-worker"):
        self._q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._consume = consume
        self._error: BaseException | None = None
        self._th = threading.Thread(target=self._run, name=name, daemon=True)
        self._th.start()

    def _run(self) -> None:
        while True:
            x = self._q.get()
            if x is _END:
                return
            if self._error is None:
                try:
                    self._consume(x)
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = e

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def put(self, item: T) -> None:
        self._check()
        self._q.put(item)

    def abort(self) -> None:
        """Stop after the queued items without raising (the caller is already handling an error)."""
        self._error = self._error or _Aborted()
        self._q.put(_END)
        self._th.join()
        self._error = None

    def close(self) -> None:
        """Wait for every queued item, stop the thread, and raise the consumer's error if it had one."""
        self._q.put(_END)
        self._th.join()
        self._check()


@contextlib.contextmanager
def torch_threads(n: int, device=None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads on CPU, restored after (no-op on other devices).

    Autoregressive decoding pushes one token at a time through small matmuls, where thread hand-offs cost more
    than they save (measured on the 2-core machine: keyframe decoding 2.3 s -> 0.7 s for 8.7 s of speech with one
    thread).
    """
    import torch

    old = torch.get_num_threads()
    if (device is not None and torch.device(device).type != "cpu") or old == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
