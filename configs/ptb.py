"""Text LEBM on the Penn Treebank (LEBM Sec. 3.2, Table 2: FPPL 107.45, RPPL 181.54, NLL 91.35).

Needs ``ptb.{train,valid,test}.txt`` (one tokenised sentence per line, the text-VAE layout) in
``--config.data.data_dir``; nothing is downloaded (see README, "Preparing real datasets"):

    python -m experiments.main --config=configs/ptb.py --workdir=runs/ptb --config.data.data_dir=/data/ptb

Settings are ``configs/default.py:lebm_text`` (K0 = 40 from the paper; the rest text-VAE conventions,
marked there as not published by the authors).
"""

from configs import default


def get_config(method: str = "lebm_text"):
    method = method or "lebm_text"
    if method != "lebm_text":
        raise ValueError(f"configs/ptb.py is a text config; method must be 'lebm_text', got {method!r}")
    c = default.get_config("lebm_text")
    c.data.max_len = 82  # PTB sentences are cut at 80 words (a handful are longer)
    return c
