"""Process-wide runtime settings that the engine's speed depends on: malloc tuning and a pool
of single-threaded workers.

Small kernels (a node's convolutions, a cache-sized block of a gossip product) scale poorly over
intra-op threads, and worse when other processes compete for the cores; independent pieces of
work (nodes, column blocks) scale well. :func:`run_in_workers` runs such pieces side by side, one
per intra-op thread (the calling thread and single-threaded pool workers), so the process still
uses ``torch.get_num_threads()`` cores.

glibc's malloc serves every block above a (dynamic, at most 32 MB) threshold with a fresh ``mmap``
and returns it with ``munmap`` when freed, so a buffer that large allocated every step (a gossip
round through the ``mix(x, r)`` protocol allocates [m, d]; large batches) is faulted in, zeroed
by the kernel, again every step. Raising the mmap and trim thresholds keeps freed blocks in the
heap for reuse (docs/benchmarks.md: page faults per step down 4-8x). This changes no result,
only where memory comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

M_TRIM_THRESHOLD = -1  # glibc mallopt parameter numbers
M_MMAP_THRESHOLD = -3
MALLOC_THRESHOLD = 1 << 30  # 1 GiB: larger blocks still come from mmap (mallopt takes an int)

_tuned: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True when they are (now) raised.

    A no-op returning False on other platforms and C libraries.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and others have no mallopt
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        _tuned = bool(mallopt(M_MMAP_THRESHOLD, MALLOC_THRESHOLD)) and bool(
            mallopt(M_TRIM_THRESHOLD, MALLOC_THRESHOLD))
    return _tuned


WORKER_PREFIX = "gossiplab-worker"
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (pid, workers): a forked child builds its own
_pools_lock = threading.Lock()


def worker_pool(workers: int) -> ThreadPoolExecutor:
    """A lazily built pool of ``workers`` threads, each limited to one intra-op thread."""
    with _pools_lock:
        key = (os.getpid(), workers)
        pool = _pools.get(key)
        if pool is None:
            main_threads = torch.get_num_threads()
            barrier = threading.Barrier(workers)

            def init() -> None:
                torch.set_num_threads(1)  # this thread's OpenMP/MKL setting, and the global one
                torch.get_num_threads()  # torch's lazy per-thread init copies the global (1) now
                barrier.wait()  # holds every worker until all have started and run this

            pool = ThreadPoolExecutor(workers, thread_name_prefix=WORKER_PREFIX)
            for f in [pool.submit(init) for _ in range(workers)]:
                f.result()
            torch.set_num_threads(main_threads)  # the calling thread keeps its setting
            _pools[key] = pool
        return pool


def run_in_workers(tasks: list[Callable[[], None]]) -> None:
    """Run independent tasks at once, each limited to one intra-op thread: the first in the
    calling thread (whose memory it can reuse), the others on a pool of single-threaded workers.
    Returns when all are done; re-raises the first exception."""
    if len(tasks) == 1 or threading.current_thread().name.startswith(WORKER_PREFIX):
        for task in tasks:  # one task, or called from a worker (nested): run here, in order
            task()
        return
    pool = worker_pool(len(tasks) - 1)
    futures = [pool.submit(t) for t in tasks[1:]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tasks[0]()
    finally:
        torch.set_num_threads(threads)
        errors = [f.exception() for f in futures]  # waits for every task
    for e in errors:
        if e is not None:
            raise e


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the body with one intra-op thread in the calling thread: for small work, where threads
    gain nothing and each parallel region can wait a whole scheduler tick on a busy machine."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
