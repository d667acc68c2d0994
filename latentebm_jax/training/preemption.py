"""Stopping cleanly on SIGTERM / SIGINT: finish the step, checkpoint it, exit with a status of its own.

TPU and cloud GPU preemptions send SIGTERM. :class:`PreemptionWatch` turns the first SIGTERM or SIGINT into
a request that the training loop honours after the step in flight (a second SIGINT interrupts at once). On
several hosts all of them must stop at the same step: JAX's preemption sync point
(``multihost_utils.reached_preemption_sync_point``) agrees on it when ``jax.distributed`` runs the
preemption service; otherwise each host's own signal decides.
"""

from __future__ import annotations

import logging
import signal
import threading

import jax

log = logging.getLogger("latentebm_jax.training")

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped on request, resumable


class Preempted(Exception):  # noqa: N818 (not an error: a requested stop)
    """Training stopped on a signal after checkpointing ``step``."""

    def __init__(self, signal_name: str, step: int, directory: str):
        super().__init__(
            f"stopped by {signal_name} after step {step}; checkpoint {step} saved in {directory}; "
            f"run the same command to resume"
        )
        self.step = step


class PreemptionWatch:
    """A context manager that catches SIGTERM and SIGINT while training (in the main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signum
        log.warning("%s received: stopping after this step (checkpointed)", signal.Signals(signum).name)

    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else "a preemption notice"

    def should_stop(self, step: int) -> bool:
        """Whether to checkpoint ``step`` and stop (all hosts agree on the step in a multi-host run)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError:  # no preemption service: every host decides by its own signal
                return self.received is not None
        return self.received is not None
