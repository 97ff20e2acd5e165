"""Worker pools and parallel maps: WorkerPool, CachingPool, pmap, distributed_reduce.

pmap keeps every worker of the pool busy without a thread per task:

    master thread: pickle f once ─┬─ send task i to worker w (CALL_FETCH) ─┐ up to DEPTH
                                  │                                        │ in flight
                                  └─ completion queue <── I/O thread ──────┘ per worker
       takes a completion: store the value (or retry / on_error / raise), send the next task

The function travels pickled once: every task carries its bytes when they are small,
and otherwise only a key that the worker looks up in a cache the first task filled.
"""

from __future__ import annotations

import collections
import functools
import heapq
import logging
import queue
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterable

import cloudpickle

from transport_zmq import MASTER_PID, MessageKind

from .errors import ProcessExitedError, RemoteException
from .process_group import get_group

log = logging.getLogger(__name__)

# Messages sent ahead to each worker, so it never waits for the master between tasks.
# Short tasks get DEEP_DEPTH: more messages per thread wake-up on both sides more than
# doubled tasks/s for tiny tasks (pmap of 10,000 additions on 2 local workers, 2-core
# VM: about 5,000 -> 10,000 tasks/s).
# Longer tasks keep DEPTH, so a slow task delays few others behind it on its worker.
# NOTE: a task that blocks or runs past 5 ms moves the worker's I/O loop to a new thread,
# so these messages can also run as up to that many threads at once on each worker.
DEPTH = 2
DEEP_DEPTH = 16
SHORT_TASK_SECONDS = 0.002
# Seconds the dispatcher reads its workers' links at a stretch before it looks at its
# retry timers again.
_READ_CHUNK = 0.5
# Function bytes up to this size go with every task; larger ones only with the first
# task per worker.
INLINE_FUNCTION_LIMIT = 65536
# Seconds a worker waits for a function that an earlier task is still unpickling.
FUNCTION_WAIT = 60.0


class WorkerPool:
    """A set of worker pids handed out one at a time (``take``) and given back (``put``).

    ``remotecall(f, pool)`` and friends take a worker for the duration of the call.
    """

    def __init__(self, pids: Iterable[int] = ()) -> None:
        self._workers: set[int] = set()
        self._free: collections.deque[int] = collections.deque()
        self._changed = threading.Condition()
        self._serves_master_when_empty = False
        for pid in pids:
            self.push(pid)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sorted(self._workers)})"

    def push(self, pid: int) -> None:
        """Add ``pid`` to the pool as a free worker."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 1:
            raise ValueError(f"invalid pid {pid!r} for a WorkerPool: expected an int >= 1")
        with self._changed:
            if pid not in self._workers:
                self._workers.add(pid)
                self._free.append(pid)
                self._changed.notify()

    def discard(self, pid: int) -> None:
        """Remove ``pid`` from the pool (a worker that has left the cluster)."""
        with self._changed:
            self._workers.discard(pid)
            try:
                self._free.remove(pid)
            except ValueError:
                pass
            self._changed.notify_all()

    def put(self, pid: int) -> None:
        """Give a worker back after a call."""
        with self._changed:
            if pid in self._workers and pid not in self._free:
                self._free.append(pid)
                self._changed.notify()

    def take(self, timeout: float | None = None) -> int:
        """Take a free worker, waiting up to ``timeout`` seconds; dead workers are dropped."""
        group = get_group()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                while self._free:
                    pid = self._free.popleft()
                    if pid in group.removed:
                        self._workers.discard(pid)
                        continue
                    return pid
                if not self._workers:
                    if self._serves_master_when_empty:
                        return MASTER_PID
                    raise RuntimeError("No active worker available in pool")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no free worker in {self!r} within {timeout:g} seconds")
                self._changed.wait(remaining if remaining is not None else 1.0)

    def workers(self) -> list[int]:
        """Return the pool's pids (``[1]`` for an empty default pool)."""
        with self._changed:
            pids = sorted(self._workers)
        if not pids and self._serves_master_when_empty:
            return [MASTER_PID]
        return pids

    def nworkers(self) -> int:
        """Return the number of workers in the pool."""
        return len(self.workers())

    def __len__(self) -> int:
        return self.nworkers()

    def isready(self) -> bool:
        """Return True when a take would not block."""
        with self._changed:
            return bool(self._free) or (not self._workers and self._serves_master_when_empty)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a worker is free; return False on timeout."""
        with self._changed:
            return self._changed.wait_for(self.isready_locked, timeout)

    def isready_locked(self) -> bool:
        """``isready`` for callers that hold the pool's lock already."""
        return bool(self._free) or (not self._workers and self._serves_master_when_empty)

    def __reduce__(self):
        # TODO: Julia forwards a serialized pool's operations to its owner; pyaddprocs
        # pools stay on the process that made them for now.
        raise TypeError(f"{type(self).__name__} objects cannot be sent to another process")


class CachingPool(WorkerPool):
    """A WorkerPool that sends each function to each worker once (pmap always does this)."""

    def clear(self) -> None:
        """Forget cached functions (they live in each worker's bounded cache)."""

    def __reduce__(self):
        raise TypeError("CachingPool objects are not serializable.")


_default_pool: WorkerPool | None = None
_default_lock = threading.Lock()


def default_worker_pool() -> WorkerPool:
    """Return the pool that workers join when they are added (pid 1 serves when it is empty)."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            from .cluster import workers

            pool = WorkerPool()
            pool._serves_master_when_empty = True
            group = get_group()
            if group.role == "worker":
                # TODO: Julia fetches the master's pool; a worker builds its own from the members it has recorded.
                for pid in workers():
                    if pid != MASTER_PID:
                        pool.push(pid)
            _default_pool = pool
        return _default_pool


# -- the worker side of pmap ------------------------------------------------------------

_functions: "collections.OrderedDict[str, Callable]" = collections.OrderedDict()
_functions_ready: dict[str, threading.Event] = {}
_functions_lock = threading.Lock()
_FUNCTION_CACHE_SIZE = 32


def _cached_function(key: str, function_bytes: bytes | None) -> Callable:
    with _functions_lock:
        function = _functions.get(key)
        if function is not None:
            _functions.move_to_end(key)
            return function
        ready = _functions_ready.setdefault(key, threading.Event())
    if function_bytes is None:
        if not ready.wait(FUNCTION_WAIT):
            raise RuntimeError(f"pmap function {key} never arrived on this worker")
        with _functions_lock:
            return _functions[key]
    function = cloudpickle.loads(function_bytes)
    with _functions_lock:
        _functions[key] = function
        while len(_functions) > _FUNCTION_CACHE_SIZE:
            old, _ = _functions.popitem(last=False)
            _functions_ready.pop(old, None)
    ready.set()
    return function


def run_task(key: str, function_bytes: bytes | None, args: tuple) -> Any:
    """Run on a worker: one pmap element."""
    return _cached_function(key, function_bytes)(*args)


def run_batch(key: str, function_bytes: bytes | None, batch: list,
              spread: bool = True) -> tuple[list, dict[int, RemoteException]]:
    """Run on a worker: a batch of pmap elements, each an argument tuple (``spread``) or one argument.

    Returns the values in order and, by position, the RemoteException of each
    element that failed (its value slot is None). Keeping the errors apart lets
    a batch without errors travel as one plain list, which pickles fastest.
    """
    from .process_group import get_group as group_of_worker

    function = _cached_function(key, function_bytes)
    values: list = []
    append = values.append
    errors: dict[int, RemoteException] = {}
    while len(values) < len(batch):
        try:
            # A plain loop, restarted after each failure at the element after it, so
            # no element runs twice.
            rest = batch[len(values):] if values else batch
            if spread:
                for args in rest:
                    append(function(*args))
            else:
                for argument in rest:
                    append(function(argument))
        except Exception as err:
            errors[len(values)] = RemoteException.capture(group_of_worker().myid, err)
            append(None)
    return values, errors


# -- the master side of pmap ------------------------------------------------------------


def _unwrap(error: BaseException) -> BaseException:
    return error.exc if isinstance(error, RemoteException) else error


class _Retry:
    """Per-element retry state: the delays still to use and the check to apply.

    ``check`` is either ``check(error) -> bool`` or Julia's form
    ``check(state, error) -> (state, bool)``, distinguished by its number of required positional parameters.
    """

    def __init__(self, delays: Iterable[float], check: Callable[..., Any] | None) -> None:
        self.delays = list(delays)
        self.check = check
        self.takes_state = check is not None and _positional_parameters(check) >= 2
        self.states: dict[int, Any] = {}

    def next_delay(self, attempt: int, error: BaseException, index: int = 0) -> float | None:
        if attempt >= len(self.delays):
            return None
        if self.check is not None and not self._allowed(error, index):
            return None
        return float(self.delays[attempt])

    def _allowed(self, error: BaseException, index: int) -> bool:
        if not self.takes_state:
            return bool(self.check(_unwrap(error)))
        outcome = self.check(self.states.get(index), _unwrap(error))
        if isinstance(outcome, tuple) and len(outcome) == 2:
            self.states[index], allowed = outcome
            return bool(allowed)
        return bool(outcome)


def _positional_parameters(function: Callable) -> int:
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty)


def pmap(f: Callable, *iterables: Iterable, pool: WorkerPool | None = None, distributed: bool = True,
         batch_size: int | str = 1, on_error: Callable[[BaseException], Any] | None = None,
         retry_delays: Iterable[float] = (), retry_check: Callable[[BaseException], bool] | None = None,
         progress: bool = False) -> list:
    """Map ``f`` over ``iterables`` (zipped) on the pool's workers; return the values in order.

    ``batch_size`` elements go to a worker per message (``"auto"`` picks about a third
    of an even share, at most 100). A failed element is retried after each delay of
    ``retry_delays`` while ``retry_check(error)`` (default: always) is true, also when
    its worker died (Julia's form ``retry_check(state, error) -> (state, bool)`` works
    too); then ``on_error(error)`` supplies its value, or pmap raises the error.
    ``on_error`` and ``retry_check`` run on the calling process and see the original
    exception, not the RemoteException around it. ``progress`` prints a
    count of finished elements on stderr.
    """
    if not callable(f):
        raise TypeError(f"pmap needs a callable, not {f!r}")
    if not iterables:
        raise TypeError("pmap needs at least one iterable")
    spread = len(iterables) > 1
    items = list(zip(*iterables)) if spread else list(iterables[0])
    if not items:
        return []
    pool = pool if pool is not None else default_worker_pool()
    pids = [p for p in pool.workers() if p != get_group().myid]
    size = _batch_size(batch_size, len(items), max(len(pids), 1))
    retry = _Retry(retry_delays, retry_check)
    if not distributed or not pids:
        return _map_locally(f, items, spread, retry, on_error)
    return _Dispatcher(f, items, spread, pids, size, retry, on_error, progress).run()


def _batch_size(batch_size: int | str, count: int, workers: int) -> int:
    if batch_size == "auto":
        return max(1, min(100, count // (3 * workers)))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"invalid batch_size {batch_size!r}: expected a positive int or 'auto'")
    return batch_size


def _map_locally(f: Callable, items: list, spread: bool, retry: _Retry, on_error: Callable | None) -> list:
    results = []
    for index, element in enumerate(items):
        attempt = 0
        while True:
            try:
                results.append(f(*element) if spread else f(element))
                break
            except Exception as err:
                delay = retry.next_delay(attempt, err, index)
                if delay is None:
                    if on_error is None:
                        raise
                    results.append(on_error(err))
                    break
                attempt += 1
                time.sleep(delay)
    return results


class _Dispatcher:
    """One pmap run over remote workers; see the module docstring."""

    def __init__(self, f, items, spread, pids, batch_size, retry, on_error, progress) -> None:
        self.group = get_group()
        self.items = items
        self.pids = list(pids)
        self.retry = retry
        self.on_error = on_error
        self.progress = progress
        self.key = uuid.uuid4().hex
        self.function_bytes = cloudpickle.dumps(f)
        self.send_function_always = len(self.function_bytes) < INLINE_FUNCTION_LIMIT
        self.has_function: set[int] = set()
        # Each message carries a range of element positions: a batch, or one element.
        self.tasks = collections.deque(
            range(start, min(start + batch_size, len(items))) for start in range(0, len(items), batch_size)
        )
        self.batched = batch_size > 1
        self.spread = spread   # elements are argument tuples (several iterables), else one argument
        self.results: list[Any] = [None] * len(items)
        self.attempts: dict[int, int] = collections.defaultdict(int)
        self.delayed: list[tuple[float, int, range]] = []   # (due time, first index, positions)
        self.completions: queue.SimpleQueue = queue.SimpleQueue()
        self.in_flight: dict[int, int] = {pid: 0 for pid in self.pids}
        self.finished = 0
        self.last_report = 0.0
        self.last_lost = self.pids[-1]   # the worker lost last, named when none is left
        self.claimed: list = []           # links this dispatcher reads (see run)
        self.links: list = []             # those plus links an outer wait of this thread reads
        self.last_completion: dict[int, float] = {}   # pid -> when its last message finished
        self.intervals = 0                # back-to-back completions measured, and their sum
        self.interval_seconds = 0.0

    def run(self) -> list:
        self._claim_links()
        try:
            return self._run()
        finally:
            self._release_links()

    # While it runs, the dispatcher is the only reader of its workers' links: their
    # replies' callbacks then fill ``completions`` on this thread, with no thread wake-up
    # per reply. It must therefore read whenever it waits, and it gives the links back
    # while user code (retry_check, on_error) runs, which may take long or wait itself.

    def _claim_links(self) -> None:
        self.claimed, already_reading = self.group.node.claim_readers(self.pids)
        self.links = self.claimed + already_reading

    def _release_links(self) -> None:
        self.group.node.release_readers(self.claimed)
        self.claimed, self.links = [], []

    def _run(self) -> list:
        outstanding = 0
        outstanding += self._fill()
        while outstanding or self.tasks or self.delayed:
            if not self.in_flight:
                raise ProcessExitedError(self.last_lost, "it was the last worker of the pmap pool")
            timeout = self._until_next_retry()
            try:
                pid, indices, waiter, sent_at = self._next_completion(timeout)
            except queue.Empty:
                outstanding += self._fill()
                continue
            outstanding -= 1
            now = time.monotonic()
            previous = self.last_completion.get(pid)
            if previous is not None and previous > sent_at:
                # The worker had this message queued while it finished the previous one.
                self.intervals += 1
                self.interval_seconds += now - previous
            self.last_completion[pid] = now
            if pid in self.in_flight:
                self.in_flight[pid] -= 1
            self._complete(pid, indices, waiter)
            outstanding += self._fill()
        return self.results

    def _next_completion(self, timeout: float | None) -> tuple:
        completions = self.completions
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.links:
            self._claim_links()
        while self.links and not all(link.closed for link in self.links):
            try:
                return completions.get_nowait()
            except queue.Empty:
                pass
            remaining = _READ_CHUNK if deadline is None else min(deadline - time.monotonic(), _READ_CHUNK)
            if remaining <= 0:
                raise queue.Empty
            self.group.node.read_claimed(self.links, lambda: not completions.empty(), remaining)
        return completions.get(timeout=None if deadline is None else max(deadline - time.monotonic(), 0))

    def _until_next_retry(self) -> float | None:
        if not self.delayed:
            return None if self.in_flight else 0.1
        return max(self.delayed[0][0] - time.monotonic(), 0.0)

    def _fill(self) -> int:
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            _, _, indices = heapq.heappop(self.delayed)
            self.tasks.appendleft(indices)
        sent = 0
        for pid in list(self.in_flight):
            depth = self._depth()
            while self.tasks and self.in_flight.get(pid, depth) < depth:
                indices = self.tasks.popleft()
                if self._send(pid, indices):
                    self.in_flight[pid] += 1
                    sent += 1
                else:
                    self.tasks.appendleft(indices)
                    break
        return sent

    def _depth(self) -> int:
        # The mean time between two completions on the same busy worker estimates how
        # long a message takes there; the first messages go at DEPTH.
        if self.intervals < DEPTH * len(self.pids):
            return DEPTH
        mean = self.interval_seconds / self.intervals
        return DEEP_DEPTH if mean < SHORT_TASK_SECONDS else DEPTH

    def _send(self, pid: int, indices: list[int]) -> bool:
        include = self.send_function_always or pid not in self.has_function
        function_bytes = self.function_bytes if include else None
        if self.batched:
            batch = self.items[indices.start:indices.stop]
            function, args = run_batch, (self.key, function_bytes, batch, self.spread)
        else:
            element = self.items[indices.start]
            function, args = run_task, (self.key, function_bytes, element if self.spread else (element,))
        completions = self.completions
        sent_at = time.monotonic()
        try:
            self.group.start_call(MessageKind.CALL_FETCH, pid, function, args, {},
                                  callback=lambda waiter: completions.put((pid, indices, waiter, sent_at)))
        except ProcessExitedError as err:
            log.warning("pmap: worker %d is gone: %s", pid, err)
            self.in_flight.pop(pid, None)
            self.last_lost = pid
            return False
        self.has_function.add(pid)
        return True

    def _complete(self, pid: int, indices: list[int], waiter) -> None:
        try:
            value, is_error = waiter.outcome()
        except Exception as err:
            value, is_error = RemoteException.capture(pid, err), True
        if isinstance(value, ProcessExitedError):
            self.in_flight.pop(pid, None)
            self.last_lost = pid
        if is_error:
            for index in indices:
                self._fail(index, value)
            return
        if not self.batched:
            self._store(indices.start, value)
            return
        values, errors = value
        if not errors and not self.progress:
            self.results[indices.start:indices.stop] = values
            self.finished += len(values)
            return
        for position, (index, result) in enumerate(zip(indices, values)):
            if position in errors:
                self._fail(index, errors[position])
            else:
                self._store(index, result)

    def _store(self, index: int, value: Any) -> None:
        self.results[index] = value
        self.finished += 1
        if self.progress:
            now = time.monotonic()
            if now - self.last_report >= 0.5 or self.finished == len(self.items):
                self.last_report = now
                print(f"pmap: {self.finished}/{len(self.items)} done", file=sys.stderr, flush=True)

    def _fail(self, index: int, error: BaseException) -> None:
        self._release_links()
        attempt = self.attempts[index]
        delay = self.retry.next_delay(attempt, error, index)
        if delay is not None:
            self.attempts[index] = attempt + 1
            heapq.heappush(self.delayed, (time.monotonic() + delay, index, range(index, index + 1)))
            return
        if self.on_error is None:
            raise error
        self._store(index, self.on_error(_unwrap(error)))


def distributed_reduce(op: Callable[[Any, Any], Any], f: Callable, iterable: Iterable, *,
                       pool: WorkerPool | None = None) -> Any:
    """Reduce ``op`` over ``f(x)`` for x in ``iterable``, one contiguous chunk per worker.

    Each worker reduces its chunk; the caller reduces the chunk results in order, like
    Julia's ``@distributed (op) for``. An empty iterable raises TypeError, as
    ``functools.reduce`` does.
    """
    items = list(iterable)
    if not items:
        raise TypeError("distributed_reduce() of an empty iterable")
    pool = pool if pool is not None else default_worker_pool()
    pids = [p for p in pool.workers() if p != get_group().myid] or [get_group().myid]
    chunks = split_evenly(len(items), len(pids))
    from .remote import remotecall

    futures = [remotecall(_reduce_chunk, pid, op, f, items[start:stop]) for pid, (start, stop) in zip(pids, chunks)]
    return functools.reduce(op, [future.fetch() for future in futures])


def _reduce_chunk(op: Callable, f: Callable, chunk: list) -> Any:
    return functools.reduce(op, map(f, chunk))


def split_evenly(count: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(count)`` into at most ``parts`` contiguous (start, stop) chunks
    whose lengths differ by at most one."""
    parts = max(1, min(parts, count))
    base, extra = divmod(count, parts)
    chunks, start = [], 0
    for index in range(parts):
        stop = start + base + (1 if index < extra else 0)
        chunks.append((start, stop))
        start = stop
    return chunks
