"""Fashion-MNIST (LEBM, or ``:joint`` for ICCV 2023 Table 1), padded to 32×32×1 like ``mnist.py``
(all classes; no anomaly protocol)."""

from configs import mnist


def get_config(method: str = "lebm"):
    c = mnist.get_config(method)
    c.data.name = "fashion_mnist"
    c.data.holdout_class = -1
    c.eval.metrics = tuple(m for m in c.eval.metrics if m != "anomaly")
    return c
