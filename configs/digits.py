"""The embedded digits (scikit-learn's 8×8 handwritten digits): the default, CPU-sized runs.

Trains in a few minutes on 2 CPU cores. It follows the MNIST anomaly protocol (LEBM Sec. 3.4, ICCV 2023
Sec. 5.4) at the same time: digit ``data.holdout_class`` is left out of training, and the test split (all
ten digits) is scored by ``−log p(x, z)`` for AUPRC (evaluator ``anomaly``). To train on all ten digits,
set ``--config.data.holdout_class=-1`` and leave ``anomaly`` out of ``eval.metrics``.

* ``:lebm`` (default): LEBM with a small 8×8 generator, n_z = 16, the authors' SVHN sampler.
* ``:joint``: the joint hierarchical EBM prior (ICCV 2023) with 3 latent layers (2, 2, 10 units), as the
  paper's MNIST model, on the digits resized to 32×32×1 (MNIST's padded size): the generator injects z_1
  at 16×16, z_2 and the top MLP at 8×8; the authors' optimiser and sampler (K = 60, s = 0.4 as their
  evaluation scripts). ``--config.joint.ebm_hidden=0`` is the Gaussian-prior baseline (``nef = 0``,
  Table 5). Why 32×32: the ladder network's bottom branch then sees 8×8 patches, as on MNIST; on the 8×8
  images it sees the whole digit, and the bottom layer takes the class (measured after 600 steps: probe
  accuracies 0.61 / 0.47 / 0.08 bottom to top, against 0.46 / 0.58 / 0.80 at 32×32).
* ``:hvae`` and ``:diffusion``: the diffusion hierarchical EBM prior (ICML 2024) in two stages on the same
  32×32×1 digits and 3 layers (2, 2, 10): ``:hvae`` trains the hierarchical VAE backbone, ``:diffusion``
  the per-layer EBMs on it with ``--config.diffusion.backbone_dir=<hvae workdir>``.
  ``--config.diffusion.scheme=marginal`` is the marginal ũ-space EBM baseline;
  ``--config.diffusion.label_layers=(3,)`` couples the digit class at the top layer (Eq. 14). It
  evaluates OOD detection by layer with the held-out digit as the out-of-distribution set.
* ``:bidvl``: BiDVL (CVPR 2022) with its conv networks at 8×8 (one stride-2 stage; Q/P/E widths 16,
  h ∈ R¹⁶), the authors' optimiser and the code's latent reconstruction (as ``configs/digits32.py:bidvl``);
  OOD AUROC of ``−E(v)`` against uniform noise and the held-out digit 9, AUPRC by ``−log p(v, h)`` (Eq. 8).
"""

from configs import default
from latentebm_jax.data.settings import data_group

_SMALL_HIERARCHY = {"latent_dims": (2, 2, 10), "widths": (16, 32, 64, 256)}


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.seed = 1
    c.data = data_group("digits", image_size=8, channels=1, holdout_class=9)
    c.train.batch_size = 100
    c.train.log_every = 20
    c.train.eval_every = 1000
    c.train.ckpt_every = 500
    c.eval.num_samples = 100
    c.eval.long_run_chains = 8
    if method not in _METHODS:
        raise ValueError(f"configs/digits.py has no setting for method {method!r}; it has {sorted(_METHODS)}")
    return _METHODS[method](c)


def _lebm(c):
    c.lebm.update(latent_dim=16, generator="small8", ngf=32, ebm_hidden=200)
    # 250 epochs of 12 steps; the small data set wants 5x the SVHN learning rates (Adam betas, decay and
    # the sampler are the authors' SVHN settings).
    c.lebm.update(lr_ebm=1e-4, lr_gen=1e-3)
    c.train.num_epochs = 250
    c.eval.metrics = ("reconstruction", "anomaly", "fd", "fd_recon", "probe", "samples", "chains")
    return c


def _joint(c):
    c.data.image_size = 32
    c.joint.update(**_SMALL_HIERARCHY)
    c.sampler.update(prior_steps=60, prior_step_size=0.4)
    c.seed = 1
    # 150 epochs of 12 steps; the small data set wants larger learning rates than SVHN's 2e-6 / 3e-4
    # (betas (0, 0.9), weight decay 5e-4 and the per-epoch decay are the authors').
    c.joint.update(lr_ebm=2e-5, lr_gen_enc=1e-3)
    c.train.num_epochs = 150
    c.eval.metrics = (
        "reconstruction",
        "anomaly",
        "fd",
        "fd_recon",
        "probe",
        "hierarchy",
        "samples",
        "chains",
    )
    return c


def _hvae(c):
    c.data.image_size = 32
    c.backbone.update(**_SMALL_HIERARCHY)
    c.hvae.lr = 1e-3
    c.train.num_epochs = 150  # 12 steps each
    c.eval.metrics = ("reconstruction", "anomaly", "fd", "probe", "hierarchy", "samples")
    return c


def _diffusion(c):
    c.data.image_size = 32
    c.backbone.update(**_SMALL_HIERARCHY)
    # the authors' sampler (T = 3, K = 50, b = 3e-5) and betas; the small data set wants a larger learning
    # rate and no per-epoch decay (12 steps per epoch instead of 1,000).
    c.diffusion.update(ebm_hidden=128, lr=1e-4, lr_decay=1.0, weight_decay=3e-5)
    c.train.num_epochs = 150
    c.eval.metrics = (
        "reconstruction",
        "fd",
        "probe",
        "hierarchy",
        "ood_by_layer",
        "controllable_synthesis",
        "samples",
        "chains",
    )
    return c


def _bidvl(c):
    c.bidvl.update(latent_dim=16, enc_width=16, gen_width=16, ebm_width=16)
    c.bidvl.latent_loss = "code"  # see configs/digits32.py
    c.train.batch_size = 50
    c.train.num_steps = 1000
    c.eval.metrics = ("reconstruction", "anomaly", "fd", "probe", "ood", "samples")
    c.eval.ood_sets = ("uniform", "holdout")
    c.eval.ood_max_examples = 360
    return c


_METHODS = {"lebm": _lebm, "joint": _joint, "hvae": _hvae, "diffusion": _diffusion, "bidvl": _bidvl}
