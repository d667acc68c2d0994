"""The embedded digits (scikit-learn's 8×8 handwritten digits): the default, CPU-sized runs.

Trains in a few minutes on 2 CPU cores. It follows the MNIST anomaly protocol (LEBM Sec. 3.4, ICCV 2023
Sec. 5.4) at the same time: digit ``data.holdout_class`` is left out of training, and the test split (all
ten digits) is scored by ``−log p(x, z)`` for AUPRC. Set ``--config.data.holdout_class=-1
--config.eval.anomaly=False`` to train on all ten digits.

* ``:lebm`` (default): LEBM with a small 8×8 generator, n_z = 16, the authors' SVHN sampler.
* ``:joint``: the joint hierarchical EBM prior (ICCV 2023) with 3 latent layers (2, 2, 10 units), as the
  paper's MNIST model, on the digits resized to 32×32×1 (MNIST's padded size): the generator injects z_1
  at 16×16, z_2 and the top MLP at 8×8; the authors' optimiser and sampler (K = 60, s = 0.4 as their
  evaluation scripts). ``--config.model.ebm_hidden=0`` is the Gaussian-prior baseline (``nef = 0``,
  Table 5). Why 32×32: the ladder network's bottom branch then sees 8×8 patches, as on MNIST; on the 8×8
  images it sees the whole digit, and the bottom layer takes the class (measured after 600 steps: probe
  accuracies 0.61 / 0.47 / 0.08 bottom to top, against 0.46 / 0.58 / 0.80 at 32×32).
* ``:diffusion``: the diffusion hierarchical EBM prior (ICML 2024) in two stages on the same 32×32×1 digits
  and 3 layers (2, 2, 10): stage 1 (``--config.diffusion.stage=1``) trains the hierarchical VAE backbone,
  stage 2 (default) the per-layer EBMs with ``--config.diffusion.backbone_dir=<stage-1 workdir>``.
  ``--config.diffusion.scheme=marginal`` is the marginal ũ-space EBM baseline;
  ``--config.diffusion.label_layers=(3,)`` couples the digit class at the top layer (Eq. 14). Stage 2
  evaluates OOD detection by layer with the held-out digit as the out-of-distribution set.
* ``:bidvl``: BiDVL (CVPR 2022) with its conv networks at 8×8 (one stride-2 stage; Q/P/E widths 16,
  h ∈ R¹⁶), the authors' optimiser and the code's latent reconstruction (as ``configs/digits32.py:bidvl``);
  OOD AUROC of ``−E(v)`` against uniform noise and the held-out digit 9, AUPRC by ``−log p(v, h)`` (Eq. 8).
"""

from configs import default


def get_config(method: str = "lebm"):
    c = default.get_config(method)
    c.data.name = "digits"
    c.data.image_size = 8
    c.data.channels = 1
    c.data.holdout_class = 9
    c.train.batch_size = 100
    c.train.log_every = 20
    c.train.eval_every = 1000
    c.train.ckpt_every = 500
    c.eval.anomaly = True
    c.eval.fd = True
    c.eval.probe = True
    c.eval.num_samples = 100
    c.eval.long_run_chains = 8
    if method == "joint":
        return _joint(c)
    if method == "diffusion":
        return _diffusion(c)
    if method == "bidvl":
        return _bidvl(c)
    c.model.latent_dim = 16
    c.model.generator = "small8"
    c.model.ngf = 32
    c.model.ebm_hidden = 200
    # 250 epochs of 12 steps; the small data set wants 5x the SVHN learning rates (Adam betas, decay and
    # the sampler are the authors' SVHN settings).
    c.train.num_epochs = 250
    c.train.lr_ebm = 1e-4
    c.train.lr_gen = 1e-3
    return c


def _joint(c):
    c.seed = 1
    c.data.train_split = "train"
    c.data.image_size = 32
    c.model.latent_dims = (2, 2, 10)
    c.model.hier_widths = (16, 32, 64, 256)
    c.sampler.prior_steps = 60
    c.sampler.prior_step_size = 0.4
    # 150 epochs of 12 steps; the small data set wants larger learning rates than SVHN's 2e-6 / 3e-4
    # (betas (0, 0.9), weight decay 5e-4 and the per-epoch decay are the authors').
    c.train.num_epochs = 150
    c.train.lr_ebm = 2e-5
    c.train.lr_gen = 1e-3
    c.eval.hierarchy = True
    return c


def _diffusion(c):
    c.seed = 1
    c.data.train_split = "train"
    c.data.image_size = 32
    c.model.latent_dims = (2, 2, 10)
    c.model.hier_widths = (16, 32, 64, 256)
    # stage 1: 150 epochs of 12 steps (as the joint model on digits)
    c.diffusion.backbone_epochs = 150
    c.diffusion.backbone_lr = 1e-3
    # stage 2: the authors' sampler (T = 3, K = 50, b = 3e-5) and betas; the small data set wants a larger
    # learning rate and no per-epoch decay (12 steps per epoch instead of 1,000).
    c.model.ebm_hidden = 128
    c.train.num_epochs = 150
    c.train.lr_ebm = 1e-4
    c.train.lr_decay = 1.0
    c.train.weight_decay_ebm = 3e-5
    c.eval.hierarchy = True
    c.eval.ood = True
    c.eval.probe = True
    return c


def _bidvl(c):
    c.data.train_split = "train"
    c.model.latent_dim = 16
    c.bidvl.enc_width = 16
    c.bidvl.gen_width = 16
    c.bidvl.ebm_width = 16
    c.bidvl.latent_loss = "code"  # see configs/digits32.py
    c.bidvl.ood_sets = ("uniform", "holdout")
    c.train.batch_size = 50
    c.train.num_steps = 1000
    c.eval.ood = True
    c.eval.ood_max_examples = 360
    return c
