"""LEBM anomaly detection on MNIST (LEBM Sec. 3.4): one digit left out of training, AUPRC on the test split
with ``−log p(x, z)`` at posterior samples as the anomaly score.

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
    c.data.holdout_class = 1
    c.eval.anomaly = True
    c.train.num_epochs = 100
    c.train.eval_every = 10 * 540
    c.train.ckpt_every = 540
    return c
