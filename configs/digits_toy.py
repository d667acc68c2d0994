"""The toy of ICCV 2023 Secs. 2.2 and 5.1 on the embedded digits: classes 0, 1 and 2 only.

* ``:joint`` — the joint hierarchical EBM prior with two latent layers of one unit each (Fig. 6);
* ``:lebm`` — the single-layer LEBM with a 2-d latent (Fig. 2).

Both write ``traversal.png`` (each unit swept with the other fixed): the paper's point is that the joint
model separates shape (bottom unit) from digit class (top unit) while LEBM's two units mix them.
``python -m experiments.toy_hierarchy --workdir=runs/toy`` trains both and puts the two side by side.
``--config.joint.latent_dims="(2, 2)"`` gives 2-d layers and the prior-vs-posterior scatter of Fig. 7.
"""

from configs import digits


def get_config(method: str = "joint"):
    if method not in ("joint", "lebm"):
        raise ValueError(f"configs/digits_toy.py has methods 'joint' and 'lebm', not {method!r}")
    c = digits.get_config(method)
    c.data.classes = (0, 1, 2)
    c.data.holdout_class = -1
    c.eval.metrics = tuple(m for m in c.eval.metrics if m != "anomaly")
    if "hierarchy" not in c.eval.metrics:
        c.eval.metrics = (*c.eval.metrics[:-2], "hierarchy", *c.eval.metrics[-2:])
    c.eval.traversal_units = 2
    c.eval.long_run_steps = (100,)
    if method == "joint":
        c.joint.update(latent_dims=(1, 1), widths=(32, 64, 128))
    else:
        c.lebm.latent_dim = 2
    c.train.num_epochs = 600  # 3 classes: 4 steps of 100 per epoch
    c.train.eval_every = 800
    c.train.ckpt_every = 400
    return c
