"""Text LEBM on Yahoo Answers (LEBM Sec. 3.2, Table 2: FPPL 80.91, RPPL 118.08, NLL 321.18).

Needs ``yahoo.{train,valid,test}.txt`` (one tokenised document per line, as the text-VAE repositories
distribute it; a ``label<TAB>text`` layout is read too) in ``--config.data.data_dir``:

    python -m experiments.main --config=configs/yahoo.py --workdir=runs/yahoo \
        --config.data.data_dir=/data/yahoo

Yahoo documents are long: rows hold up to 200 tokens, and the vocabulary keeps words seen at least 5 times
(about 20k, the text-VAE setting for this corpus).
"""

from configs import default
from latentebm_jax.data.settings import data_group


def get_config(method: str = "lebm_text"):
    method = method or "lebm_text"
    if method != "lebm_text":
        raise ValueError(f"configs/yahoo.py is a text config; method must be 'lebm_text', got {method!r}")
    c = default.get_config("lebm_text")
    c.data = data_group("yahoo", max_len=200, min_count=5)
    return c
