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
    want = api_reference.render()
    assert _without_signatures(current) == _without_signatures(want), (
        "docs/api.md is out of date: run python -m experiments.api_reference"
    )


def test_api_reference_covers_the_public_functions():
    text = api_reference.render()
    for name in ("langevin", "ebm_log_prior", "contrastive_ebm_loss", "marginal_log_likelihood", "train"):
        assert f"**`{name}`**" in text, name
    assert "(no docstring)" not in text  # every public function says what it is
