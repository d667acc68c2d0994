"""Text LEBM (Pang et al. 2020, Sec. 3.2) on the shipped toy-grammar corpus: the CPU-sized text run.

The corpus (``latentebm_jax/data/text_toy``, 10,000 / 1,000 / 1,000 sentences of a documented probabilistic
grammar, ``latentebm_jax/data/toy_grammar.py``) needs no download. Besides LEBM's Table 2 metrics (NLL,
FPPL, RPPL) the evaluation reports what only a known grammar allows: the fraction of generated sentences
that parse (against random strings of the same lengths) and the grammar's own per-token perplexity, the
floor any model's NLL can reach.

    python -m experiments.main --config=configs/text_toy.py --workdir=runs/text_toy

Sizes are scaled to the 48-word language (latent 16, embeddings 64, LSTM 128, language models 64/128);
the sampler is the paper's (K0 = 40) with the image LEBM's step sizes.
"""

from configs import default
from latentebm_jax.data.settings import data_group


def get_config(method: str = "lebm_text"):
    c = text_config(method, "configs/text_toy.py")
    c.data = data_group("text_toy", max_len=32, min_count=1)  # the longest toy sentence has 30 words
    c.train.num_epochs = 10
    c.train.log_every = 20
    c.train.eval_every = 500
    c.train.ckpt_every = 500
    return c


def text_config(method: str, path: str):
    """The text LEBM at the shipped corpora's sizes (``configs/text_modes.py`` starts from it too):
    everything but the data and the training length; ``path`` names the calling file in errors."""
    method = method or "lebm_text"
    if method != "lebm_text":
        raise ValueError(f"{path} is a text config; method must be 'lebm_text', got {method!r}")
    c = default.get_config("lebm_text")
    c.lebm_text.update(latent_dim=16, embed_dim=64, decoder_hidden=128, dropout_in=0.0, dropout_out=0.0)
    c.lebm_text.update(lr_ebm=1e-4, lr_gen=2e-3)
    e = c.eval
    e.fppl_samples = 1000
    e.rppl_samples = 10000  # as many generated sentences as the real training split has
    e.lm_embed_dim = 64
    e.lm_hidden = 128
    e.lm_epochs = 5
    e.nll_samples = 16
    e.nll_chains = 4
    e.batch_size = 100
    e.num_samples = 20  # sentences printed / written at every eval interval
    e.long_run_steps = (40, 200)
    e.long_run_chains = 4
    e.long_run_frames = 10
    c.train.batch_size = 100
    return c
