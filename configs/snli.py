"""Text LEBM on SNLI sentences (LEBM Sec. 3.2, Table 2: FPPL 27.81, RPPL 31.96, NLL 28.90).

Premises and hypotheses of tfds ``snli`` (lower-cased, each sentence once), read with
``tfds.data_source`` from ``--config.data.data_dir`` (default ``$TFDS_DATA_DIR``); prepare it offline with
``tfds build snli`` (README, "Preparing real datasets"):

    python -m experiments.main --config=configs/snli.py --workdir=runs/snli --config.data.data_dir=/data/tfds
"""

from configs import default
from latentebm_jax.data.settings import data_group


def get_config(method: str = "lebm_text"):
    method = method or "lebm_text"
    if method != "lebm_text":
        raise ValueError(f"configs/snli.py is a text config; method must be 'lebm_text', got {method!r}")
    c = default.get_config("lebm_text")
    c.data = data_group("snli", max_len=42, min_count=2)  # 40 words: SNLI sentences are short
    return c
