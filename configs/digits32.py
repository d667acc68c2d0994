"""LEBM on the embedded digits resized to 32×32×3, so the real SVHN networks (DCGAN generator ``ngf = 64``,
EBM width 200, n_z = 100) and the SVHN sampler settings train on data that ships with the project."""

from configs import default


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "digits"
    c.data.image_size = 32
    c.data.channels = 3
    c.train.batch_size = 100
    c.train.num_epochs = 100
    c.train.log_every = 10
    c.train.eval_every = 500
    c.train.ckpt_every = 250
    c.eval.long_run_chains = 8
    c.eval.fd = True
    c.eval.probe = True
    return c
