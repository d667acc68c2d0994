"""LEBM on the embedded digits (scikit-learn's 8×8 handwritten digits): the default, CPU-sized run.

Trains in a few minutes on 2 CPU cores. It follows the MNIST anomaly protocol of LEBM Sec. 3.4 at the
same time: digit ``data.holdout_class`` is left out of training, and the test split (all ten digits) is
scored by ``−log p(x, z)`` for AUPRC. Set ``--config.data.holdout_class=-1 --config.eval.anomaly=False``
to train on all ten digits.
"""

from configs import default


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "digits"
    c.data.image_size = 8
    c.data.channels = 1
    c.data.holdout_class = 9
    c.model.latent_dim = 16
    c.model.generator = "small8"
    c.model.ngf = 32
    c.model.ebm_hidden = 200
    c.train.batch_size = 100
    # 250 epochs of 12 steps; the small data set wants 5x the SVHN learning rates (Adam betas, decay and
    # the sampler are the authors' SVHN settings).
    c.train.num_epochs = 250
    c.train.lr_ebm = 1e-4
    c.train.lr_gen = 1e-3
    c.train.log_every = 20
    c.train.eval_every = 1000
    c.train.ckpt_every = 500
    c.eval.anomaly = True
    c.eval.fd = True
    c.eval.probe = True
    c.eval.num_samples = 100
    c.eval.long_run_chains = 8
    return c
