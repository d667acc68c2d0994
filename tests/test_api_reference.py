"""docs/api.md lists every public function and class of the library with its docstring's first paragraph."""

from __future__ import annotations

import re

from experiments import api_reference


def _without_signatures(text: str) -> list[str]:
    # signatures print type annotations differently across Python versions; names and docs do not
    return [re.sub(r" `(def|class) [^`]*`", "", line) for line in text.splitlines()]


def test_api_reference_is_current():
    with open(api_reference.PATH, encoding="utf-8") as f:
        current = f.read()
    have, want = _without_signatures(current), _without_signatures(api_reference.render())
    missing = [line for line in want if line not in set(have)]
    stale = [line for line in have if line not in set(want)]
    assert have == want, (
        "docs/api.md is out of date: run python -m experiments.api_reference\n"
        f"missing: {missing[:5]}\nstale: {stale[:5]}"
    )


def test_api_reference_covers_the_public_functions():
    text = api_reference.render()
    for name in ("langevin", "ebm_log_prior", "contrastive_ebm_loss", "marginal_log_likelihood", "train"):
        assert f"**`{name}`**" in text, name
    assert "(no docstring)" not in text  # every public function says what it is
