"""What riskpipe changes in Beam's Python SDK worker, and why: five measured costs.

The riskpipe worker pool (:mod:`pipeline.runners.worker_pool`) calls :func:`install` in every
SDK worker it starts; nothing else in Beam changes. Each change keeps Beam's behaviour and
fixes one cost or fault seen on the FlinkRunner (figures in ``docs/flink-notes.md``):

1. **State cache sizing.** Beam weighs every value it puts in its state cache with
   ``objsize.get_deep_size``, which (objsize 0.7) first walks the globals of every loaded
   module to exclude them: about 0.7 ms per put with Beam loaded, two puts per key and
   bundle. Profiled on Flink, that was a third of the SDK worker's time. Here the walk is
   skipped (``exclude_modules_globals=False``); the measure still stops at modules, types
   and functions (Beam's own filter), so values weigh the same: 7 µs a put. A cleared cell
   and a cell holding one ``CacheAware`` value without referents are weighed without
   objsize, to the same figure, in 0.4 µs instead of 4-5.
2. **Pipelined state commits.** At the end of a bundle Beam commits the state of every key
   the bundle touched one cell at a time, each commit waiting for the runner's answer
   before the next is sent, and never looks at the answers' ``error`` field. Here every
   clear and append is sent first (the state API is one ordered stream, so the runner
   applies them in order), then all answers are awaited and checked; an error fails the
   bundle, as a failed write must. Sets, ordered lists and combining values keep Beam's
   own commit.
3. **Output that leaves while a bundle runs, cut only between elements.** A worker buffers
   a bundle's output until the bundle ends or 10 MB have piled up. Beam's time-based
   alternative (``data_buffer_time_limit_ms``) flushes from a timer thread while the
   bundle's thread may be half-way through writing an element: the runner then receives
   half an element and fails the bundle (on Flink: ``CoderException: EOFException`` in
   ``BeamFnDataInboundObserver``). Here a stream flushes at most ``interval_ms`` after its
   oldest buffered byte, and only in ``maybe_flush()``, which the output operation calls
   after each complete element.
4. **A paced garbage collector** (:mod:`pipeline.runners.gc_pacing`): CPython looked for
   cycles every 10 to 20 records; now every 50,000 allocations.
5. **A bundle's end that does not wait for the state sampler.** Every bundle starts a
   thread that samples which step is running; it sleeps 2 ms, then 20 % longer each time,
   up to 200 ms, and the bundle's end joins it: after half a second a bundle ended about
   50 ms (up to 100 ms) after its work was done, its response and, on Flink, its stage's
   output waiting with it. Here the sampler sleeps at most ``SAMPLER_PERIOD_MS``.
"""

from __future__ import annotations

import gc
import logging
import sys
import time

import objsize
from apache_beam.runners.worker import bundle_processor, data_plane, statecache, statesampler

from pipeline.runners import gc_pacing

__all__ = ["StateCommitError", "install", "install_in_process", "uninstall"]

logger = logging.getLogger(__name__)


# -- 1. state cache sizing ------------------------------------------------------------------
_ORIGINAL_DEEP_SIZE = statecache.get_deep_size


def _deep_size(*objs) -> int:
    # Most puts are a cleared cell ([]), one CacheAware value without referents (the account
    # step's history) or a list of them (the counterparty step's journal): weighed without
    # objsize's setup and walk, 0.4 µs instead of 4-5 for one value, to the same figure.
    # A list headed by a value that weighs what follows it (a journal's snapshot, which
    # counts its changes) is weighed by that value alone: Beam weighs a bag again after
    # every append, and a walk of a long journal per commit grows with its length.
    if len(objs) == 1 and type(objs[0]) is list:
        items = objs[0]
        size = sys.getsizeof(items)
        if items and getattr(items[0], "WEIGHS_WHAT_FOLLOWS", False):
            return size + sys.getsizeof(items[0])
        for value in items:
            if not isinstance(value, statecache.CacheAware) or value.get_referents_for_cache():
                break
            size += sys.getsizeof(value)
        else:
            return size
    return objsize.get_deep_size(
        *objs,
        get_size_func=statecache._size_func,
        get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func,
        exclude_modules_globals=False,
    )


# -- 2. pipelined state commits -------------------------------------------------------------
_ORIGINAL_COMMIT = bundle_processor.FnApiUserStateContext.commit


class StateCommitError(RuntimeError):
    """The runner answered a state write with an error: the bundle must fail."""


def _start(bag: bundle_processor.SynchronousBagRuntimeState) -> list:
    """Sends a bag's pending clear and appends without waiting; returns their futures."""
    futures = []
    if bag._cleared:
        futures.append(bag._state_handler.clear(bag._state_key))
    if bag._added_elements:
        futures.append(
            bag._state_handler.extend(
                bag._state_key, bag._value_coder.get_impl(), bag._added_elements
            )
        )
    return futures


def _commit_pipelined(context: bundle_processor.FnApiUserStateContext) -> None:
    futures = []
    for state in context._all_states.values():
        if isinstance(state, bundle_processor.ReadModifyWriteRuntimeState):
            state = state._underlying_bag_state
        if type(state) is bundle_processor.SynchronousBagRuntimeState:
            futures.extend(_start(state))
        else:
            state.commit()  # other kinds wait on their own
    errors = []
    for future in futures:
        response = future.get()
        if response is not None and response.error:
            errors.append(response.error)
    if errors:
        raise StateCommitError(
            f"{len(errors)} of {len(futures)} state writes failed; first: {errors[0]}"
        )



# -- 3. output flushed between elements -----------------------------------------------------
_ORIGINAL_CREATE = data_plane.ClosableOutputStream.create


class _ElementBoundaryFlushStream(data_plane.SizeBasedBufferingClosableOutputStream):
    """Flushes by size (Beam's rule) or by the age of its oldest buffered byte."""

    interval_s = 0.02

    def __init__(self, close_callback=None, flush_callback=None):
        super().__init__(close_callback, flush_callback=flush_callback)
        self._since = None

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if self.size() > self._size_flush_threshold or now - self._since >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        super().flush()
        self._since = None


def _create(close_callback, flush_callback, data_buffer_time_limit_ms):
    if flush_callback is None:  # a stream nobody flushes midway: Beam's own
        return _ORIGINAL_CREATE(close_callback, flush_callback, data_buffer_time_limit_ms)
    return _ElementBoundaryFlushStream(close_callback, flush_callback=flush_callback)




# -- 4. paced garbage collection (pipeline.runners.gc_pacing) -------------------------------
_ORIGINAL_GC_THRESHOLDS = gc.get_threshold()


# -- 5. a bundle's end that does not wait for the state sampler ------------------------------
SAMPLER_PERIOD_MS = 10
_ORIGINAL_SAMPLER = statesampler.StateSampler


class _PromptStateSampler(_ORIGINAL_SAMPLER):
    """Beam's sampler with a short longest sleep, so that stopping it is prompt."""

    def __init__(self, prefix, counter_factory, sampling_period_ms=SAMPLER_PERIOD_MS):
        super().__init__(prefix, counter_factory, min(sampling_period_ms, SAMPLER_PERIOD_MS))


# -- installing -----------------------------------------------------------------------------
def install(pipelined_commits: bool = True, output_interval_ms: int = 20) -> None:
    """Applies the changes to this process (an SDK worker); 0 or False leaves one out."""
    statecache.get_deep_size = _deep_size
    gc_pacing.pace()
    bundle_processor.statesampler.StateSampler = _PromptStateSampler
    if pipelined_commits:
        bundle_processor.FnApiUserStateContext.commit = _commit_pipelined
    if output_interval_ms > 0:
        _ElementBoundaryFlushStream.interval_s = output_interval_ms / 1000
        data_plane.ClosableOutputStream.create = staticmethod(_create)
    logger.info(
        "SDK worker: state cache sized without the module walk; pipelined commits %s; "
        "output every %s ms; garbage collector paced; state sampler stops within %d ms",
        "on" if pipelined_commits else "off",
        output_interval_ms or "-", SAMPLER_PERIOD_MS,
    )


def install_in_process() -> None:
    """The changes for an SDK worker in this process (the DirectRunner's FnApiRunner, Prism's
    loopback worker): 1 and 2; the output keeps Beam's flush by size, as a bounded run has
    no latency to save. Without 1, weighing state for the cache took about a third of a
    bounded run's time (``docs/flink-notes.md``)."""
    install(pipelined_commits=True, output_interval_ms=0)


def uninstall() -> None:
    """Back to Beam's own behaviour (for tests)."""
    gc.set_threshold(*_ORIGINAL_GC_THRESHOLDS)
    statecache.get_deep_size = _ORIGINAL_DEEP_SIZE
    bundle_processor.statesampler.StateSampler = _ORIGINAL_SAMPLER
    bundle_processor.FnApiUserStateContext.commit = _ORIGINAL_COMMIT
    data_plane.ClosableOutputStream.create = staticmethod(_ORIGINAL_CREATE)
