"""Anomaly detection on MNIST (LEBM Sec. 3.4; ICCV 2023 Table 3, and Table 1 with ``:joint``): one digit
left out of training, AUPRC on the test split with ``−log p(x, z)`` at inferred latents as the score.

Images are padded from 28×28 to 32×32 (one channel) so the 32×32 DCGAN generator runs on them; the other
settings are the SVHN defaults [uncertain: the authors' MNIST settings are not in their repository].
Choose the held-out digit with ``--config.data.holdout_class=K`` (the paper reports 1, 4, 5, 7, 9).
"""

from configs import default


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "mnist"
    c.data.channels = 1
    c.data.resize_method = "pad"
    c.data.train_split = "train"
    c.data.holdout_class = 1
    # the diffusion prior scores the held-out digit by layer (Fig. 3); the others by -log p(x, z)
    default.add_metrics(c, "ood_by_layer" if method == "diffusion" else "anomaly")
    c.train.num_epochs = 100
    c.train.eval_every = 10 * 540
    c.train.ckpt_every = 540
    if method == "joint":
        c.joint.update(latent_dims=(2, 2, 10), widths=(64, 128, 256, 512))
        c.sampler.update(prior_steps=60, prior_step_size=0.4)
        default.add_metrics(c, "hierarchy")
    return c
