"""Progress bars that suit where the output goes.

:func:`tqdm` is ``tqdm.auto.tqdm`` on a terminal and in notebooks; when stderr is a file or a pipe (a log
of a batch job) it draws nothing, since every redraw would land on one ever-growing line there. The
training loop prints plain progress lines in that case (``training/run_log.py``). ``TQDM_DISABLE=1``
turns every bar off.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm as _tqdm


def interactive() -> bool:
    """Whether stderr is a terminal (or a notebook, whose output tqdm draws as a widget)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def tqdm(*args: Any, **kwargs: Any):
    """``tqdm.auto.tqdm`` that draws nothing when stderr is neither a terminal nor a notebook."""
    if not interactive():
        kwargs["disable"] = True
    return _tqdm(*args, **kwargs)
