"""Pipelined state commits for the Beam Python SDK worker: send every write, then wait once.

At the end of a bundle the SDK commits the user state of every key the bundle touched.
Beam 2.77 does it one state cell at a time, and each commit waits for the runner's answer
before the next is sent (``SynchronousBagRuntimeState.commit`` → ``to_await.get()``): a bundle
that touched 600 accounts waits for 600 round trips to the runner in a row. It also never
looks at the answers' ``error`` field.

:func:`install` replaces the commit of a bundle's user state: every clear and append is
sent first (the state API is one ordered stream, so the runner applies them in order), then
the answers are awaited together and every one is checked; an error fails the bundle, as a
failed write must. State kinds other than bags and read-modify-write values (sets,
ordered lists, combining values) keep Beam's own commit.

The riskpipe worker pool (:mod:`pipeline.runners.worker_pool`) installs it in every SDK
worker it starts; nothing else changes in Beam.
"""

from __future__ import annotations

import logging

from apache_beam.runners.worker import bundle_processor

__all__ = ["StateCommitError", "install", "installed"]

logger = logging.getLogger(__name__)

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


def install() -> None:
    """Makes every bundle of this process commit its user state pipelined (idempotent)."""
    bundle_processor.FnApiUserStateContext.commit = _commit_pipelined
    logger.info("state commits: pipelined (send all, then wait once)")


def installed() -> bool:
    return bundle_processor.FnApiUserStateContext.commit is _commit_pipelined


def uninstall() -> None:
    """Back to Beam's own commit (for tests)."""
    bundle_processor.FnApiUserStateContext.commit = _ORIGINAL_COMMIT
