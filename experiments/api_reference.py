"""Write the API reference (``docs/api.md``) from the library's docstrings.

    python -m experiments.api_reference            # rewrite docs/api.md
    python -m experiments.api_reference --check    # exit 1 if docs/api.md is out of date

Every public function and class (a name without a leading underscore, defined in the module itself) of the
modules in :data:`MODULES` is listed with its signature and the first paragraph of its docstring, under the
module's own first docstring paragraph. ``tests/test_api_reference.py`` keeps the file current.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import sys

MODULES = (
    "latentebm_jax.langevin",
    "latentebm_jax.priors",
    "latentebm_jax.losses",
    "latentebm_jax.diffusion",
    "latentebm_jax.optim",
    "latentebm_jax.state",
    "latentebm_jax.checkpoint",
    "latentebm_jax.config_schema",
    "latentebm_jax.device_map",
    "latentebm_jax.backbones.base",
    "latentebm_jax.backbones.hvae",
    "latentebm_jax.backbones.nvae",
    "latentebm_jax.backbones.nvae_ops",
    "latentebm_jax.backbones.nvae_distributions",
    "latentebm_jax.backbones.nvae_convert",
    "latentebm_jax.backbones.nvae_backbone",
    "latentebm_jax.backbones.nvae_objective",
    "latentebm_jax.methods",
    "latentebm_jax.methods.base",
    "latentebm_jax.methods.common",
    "latentebm_jax.methods.eval_tools",
    "latentebm_jax.methods.lebm",
    "latentebm_jax.methods.lebm_text",
    "latentebm_jax.methods.joint",
    "latentebm_jax.methods.hvae",
    "latentebm_jax.methods.nvae",
    "latentebm_jax.methods.diffusion_prior",
    "latentebm_jax.methods.diffusion_evaluators",
    "latentebm_jax.methods.bidvl",
    "latentebm_jax.methods.bidvl_ood",
    "latentebm_jax.evaluation",
    "latentebm_jax.evaluation.cache",
    "latentebm_jax.evaluation.reconstruction",
    "latentebm_jax.evaluation.generation",
    "latentebm_jax.evaluation.probes",
    "latentebm_jax.evaluation.hierarchy",
    "latentebm_jax.evaluation.samples",
    "latentebm_jax.nets.energy",
    "latentebm_jax.nets.generator",
    "latentebm_jax.nets.encoder",
    "latentebm_jax.nets.small_conv",
    "latentebm_jax.nets.hvae",
    "latentebm_jax.nets.text",
    "latentebm_jax.data",
    "latentebm_jax.data.settings",
    "latentebm_jax.data.digits",
    "latentebm_jax.data.sources",
    "latentebm_jax.data.tfds_sources",
    "latentebm_jax.data.prepare",
    "latentebm_jax.data.pipeline",
    "latentebm_jax.data.text",
    "latentebm_jax.data.toy_grammar",
    "latentebm_jax.data.mode_grammar",
    "latentebm_jax.metrics.frechet",
    "latentebm_jax.metrics.detection",
    "latentebm_jax.metrics.domain",
    "latentebm_jax.metrics.probe",
    "latentebm_jax.metrics.inception",
    "latentebm_jax.metrics.inception_score",
    "latentebm_jax.metrics.language_model",
    "latentebm_jax.training.setup",
    "latentebm_jax.training.loop",
    "latentebm_jax.training.evaluate",
    "latentebm_jax.training.parallel",
    "latentebm_jax.viz",
)

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "api.md")


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return "(no docstring)"
    text = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(line.strip() for line in text.splitlines())


def _signature(obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    sig = re.sub(r" at 0x[0-9a-f]+", "", sig)  # default values printed with their address
    return sig if len(sig) <= 160 else sig[:157] + "..."


def _members(module) -> list[tuple[str, object]]:
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) != module.__name__:
            continue  # re-exported from elsewhere
        out.append((name, obj))
    return sorted(out, key=lambda item: item[0].lower())


def render() -> str:
    """The whole reference as Markdown."""
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python -m experiments.api_reference`; do not edit by hand.",
        "Every entry gives the signature and the first paragraph of the docstring (the full text, with the",
        "paper's equation numbers, is in the source).",
        "",
    ]
    for name in MODULES:
        module = importlib.import_module(name)
        lines += [f"## `{name}`", "", _first_paragraph(module.__doc__), ""]
        for member, obj in _members(module):
            kind = "class" if inspect.isclass(obj) else "def"
            lines.append(f"- **`{member}`** `{kind} {member}{_signature(obj)}`  ")
            lines.append(f"  {_first_paragraph(obj.__doc__)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = ""
        if os.path.exists(PATH):
            with open(PATH, encoding="utf-8") as f:
                current = f.read()
        if current != text:
            print(f"{PATH} is out of date: run python -m experiments.api_reference", file=sys.stderr)
            return 1
        return 0
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    with open(PATH, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
