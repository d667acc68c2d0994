"""Text LEBM (Pang et al. 2020, Secs. 3.2–3.3) on the shipped corpus whose sentences need the latent.

The corpus (``latentebm_jax/data/text_modes``, 10,000 / 1,000 / 1,000 sentences of the documented grammar
``latentebm_jax/data/mode_grammar.py``) draws four choices once per sentence (topic among 4, number, tense,
mood, ≈ 3.5 of its ≈ 18.8 nats) and shows each in words far apart. On the toy corpus
(``configs/text_toy.py``) every dependency is local and an LSTM ignores ``z``; here a decoder that knows
the choices from ``z`` predicts the sentence better than one that must guess them, and the 4 topics are
modes of the prior. Besides the toy corpus' metrics (NLL, FPPL, RPPL, parse rates, the grammar's own NLL)
the evaluation reports which topics the samples cover (``mode_coverage``, ``sample_topic_fractions``), how
often a reconstruction from the posterior sample keeps the sentence's choices (``recon_mode_accuracy``,
``recon_topic_accuracy``), and how often long-run prior chains change topic (``chain_topic_switches``,
Table 3's chains moving between modes). Compare ``recon_nll`` with ``nll``: their gap is what ``z`` carries.

    python -m experiments.main --config=configs/text_modes.py --workdir=runs/text_modes

Sizes are those of ``configs/text_toy.py`` (latent 16, embeddings 64, LSTM 128, batch 100, language models
64/128); the sampler is the paper's (K0 = 40) with the image LEBM's step sizes.
"""

from configs import text_toy
from latentebm_jax.data.settings import data_group


def get_config(method: str = "lebm_text"):
    c = text_toy.text_config(method, "configs/text_modes.py")
    c.data = data_group("text_modes", max_len=27, min_count=1)  # the longest sentence has 25 words
    c.eval.long_run_chains = 8
    c.eval.long_run_frames = 20
    # 6,000 steps: about 0.25-0.3 s a step on 2 shared CPU cores (measured), 25-30 min of training
    c.train.num_epochs = 60
    c.train.log_every = 50
    c.train.eval_every = 1000
    c.train.ckpt_every = 1000
    return c
