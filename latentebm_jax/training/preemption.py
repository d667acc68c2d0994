"""Stopping cleanly on SIGTERM / SIGINT: finish the step, checkpoint it, exit with a status of its own.

TPU and cloud GPU preemptions send SIGTERM. :class:`PreemptionWatch` turns the first SIGTERM or SIGINT into
a request that the training loop honours after the step in flight (a second SIGINT interrupts at once).

On several hosts all of them must stop at the same step, whichever host got the signal, or the collective
checkpoint would wait forever. ``jax.distributed`` runs a preemption service whose own SIGTERM handler
tells every host; ``multihost_utils.reached_preemption_sync_point(step)``, asked after every step, then
turns true on all hosts at the same step. The watch leaves that SIGTERM handler in place and turns a SIGINT
into a SIGTERM to itself so it travels the same way. With the service switched off
(``jax_enable_preemption_service=False``) the hosts agree through a small all-gather of their flags each
step instead.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import jax
import numpy as np

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
        self._service = jax.process_count() > 1 and bool(jax.config.jax_enable_preemption_service)

    def _handler(self, signum, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signum
        log.warning("%s received: stopping after this step (checkpointed)", signal.Signals(signum).name)
        if self._service and signum == signal.SIGINT:
            os.kill(os.getpid(), signal.SIGTERM)  # to the preemption service, which tells every host

    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if sig == signal.SIGTERM and self._service:
                    continue  # the preemption service's own handler
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def signal_name(self) -> str:
        if self.received is not None:
            return signal.Signals(self.received).name
        return "a preemption notice (SIGTERM on some host)" if self._service else "a preemption notice"

    def should_stop(self, step: int) -> bool:
        """Whether to checkpoint ``step`` and stop; on several hosts, called after every step by all of them,
        it is true on all of them at the same step."""
        if jax.process_count() == 1:
            return self.received is not None
        from jax.experimental import multihost_utils

        if self._service:
            return bool(multihost_utils.reached_preemption_sync_point(step))
        flags = multihost_utils.process_allgather(np.int32(self.received is not None))
        return bool(np.any(flags))
