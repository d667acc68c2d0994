"""Default config and schema: every allowed key, with each method's SVHN settings from the authors' code.

``get_config('lebm')`` is LEBM's train_svhn.py; ``get_config('joint')`` the joint hierarchical prior's
train_fid.py (ICCV 2023); ``get_config('diffusion')`` the diffusion hierarchical prior's CIFAR-10 settings
(ICML 2024, official-defaults §3.1) on a 3-layer hierarchical VAE backbone; ``get_config('bidvl')`` BiDVL's
train_cifar_BiDVL.py (CVPR 2022, official-defaults §4.1). Dataset files start from
:func:`get_config` and override values; keys not
defined here are rejected at start-up, as are values outside :data:`CHOICES` or failing :data:`CHECKS`.
Keys a method does not read are ignored by it (e.g. ``model.latent_dim`` by ``joint``, which reads
``model.latent_dims``).
"""

from __future__ import annotations

import ml_collections

METHODS = ("lebm", "joint", "diffusion", "bidvl", "lebm_text")
DATASETS = ("digits", "svhn_cropped", "cifar10", "celeb_a", "mnist", "fashion_mnist")
# Text corpora (method lebm_text): the shipped grammar corpus, PTB / Yahoo files, tfds snli.
TEXT_DATASETS = ("text_toy", "ptb", "yahoo", "snli")
BIDVL_OOD_SETS = ("uniform", "holdout", *DATASETS)


def get_config(method: str = "lebm") -> ml_collections.ConfigDict:
    """LEBM on SVHN 32×32 with the official defaults (train_svhn.py)."""
    method = method or "lebm"
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {list(METHODS)}")
    c = ml_collections.ConfigDict()
    c.method = method
    c.seed = 1

    c.data = d = ml_collections.ConfigDict()
    d.name = "svhn_cropped"
    d.data_dir = ""  # tfds data_dir; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    d.image_size = 32
    d.channels = 3
    d.train_split = "train"
    d.test_split = "test"
    d.crop = "none"
    d.resize_method = "bilinear"
    d.holdout_class = -1  # >= 0: anomaly protocol, this class is left out of training
    d.classes = ()  # non-empty: keep only these classes in both splits (ICCV 2023 toy: (0, 1, 2))
    d.attributes = ()  # celeb_a attribute names read into batch["attributes"] (diffusion label coupling)
    d.max_len = 40  # text: tokens per row, <bos> and <eos> included (longer sentences are truncated)
    d.min_count = 1  # text: words seen fewer times in the training split map to <unk>

    c.model = m = ml_collections.ConfigDict()
    m.latent_dim = 100
    m.generator = "dcgan"
    m.ngf = 64
    m.ebm_hidden = 200
    m.ebm_layers = 2
    m.ebm_activation = "gelu"
    m.likelihood_sigma = 0.3
    m.prior_sigma = 1.0
    # "gaussian_nll": ‖x−g(z)‖²/(2σ²) as in the paper (Eq. 11); "sum_squared": the official code's ‖x−g(z)‖².
    m.generator_loss = "gaussian_nll"
    # How the generator's transposed convolutions are computed; every choice is the same function
    # (latentebm_jax/nets/conv_transpose.py). "fast": Winograd/sub-pixel forms, ~2× faster steps on CPU;
    # "xla": Flax's plain ConvTranspose (the reference); "winograd"/"direct": one forward for every layer.
    m.conv_impl = "fast"
    m.ebm_spectral_norm = False  # spectral norm on every EBM layer (the joint prior's authors use it)
    # Joint hierarchical prior (ICCV 2023): latent layers bottom z_1 first, the authors' channel list
    # cs[1:] = (c_1..c_L, top MLP width) shared by generator and ladder inference network, and how z_i
    # joins h_{i+1} ("concat" as Eq. 5 and train_fid.py; "sum" as train_hs.py).
    m.latent_dims = (10, 10, 10, 10, 10)
    m.hier_widths = (128, 256, 256, 512, 1024, 2048)
    m.hier_merge = "concat"
    # Per-layer KL(q(z_i|x) || N(0, I)) in the ELBO: "analytic" closed form, or "sample", the authors'
    # one-sample estimate log q(z|x) - log N(z; 0, I) (same expectation).
    m.kl_estimator = "analytic"

    c.sampler = s = ml_collections.ConfigDict()
    s.init_sigma = 1.0
    s.prior_steps = 60
    s.prior_step_size = 0.4
    s.posterior_steps = 20
    s.posterior_step_size = 0.1
    # lax.scan unroll of the chains (speed only): 0 = fully unrolled. XLA:CPU runs the generator's
    # convolutions several times faster outside a loop, so posterior chains are unrolled by default.
    s.prior_unroll = 1
    s.posterior_unroll = 0

    c.train = t = ml_collections.ConfigDict()
    t.batch_size = 100
    t.num_epochs = 201
    t.num_steps = -1  # > 0 overrides num_epochs
    t.lr_ebm = 2e-5
    t.lr_gen = 1e-4
    t.beta1 = 0.5
    t.beta2 = 0.999
    t.weight_decay_ebm = 0.0
    t.weight_decay_gen = 0.0
    t.lr_decay = 0.998
    t.lr_decay_at = "epoch_end"
    t.grad_clip_norm = 0.0  # 0 = off (the authors' default)
    t.log_every = 50
    t.eval_every = 5000  # steps; 0 = only at the end
    t.ckpt_every = 1000  # steps
    t.keep_checkpoints = 3
    t.prefetch = 2

    c.eval = e = ml_collections.ConfigDict()
    e.batch_size = 100
    e.num_samples = 100  # images in the sample grid
    e.posterior_steps = -1  # -1 = sampler.posterior_steps
    e.max_test_examples = -1  # -1 = the whole test split
    e.anomaly = False  # AUPRC with data.holdout_class as the anomalous class
    e.long_run_steps = (100, 2500)  # K'0 of the long-run chains (LEBM Figs. 3-4)
    e.long_run_chains = 8
    e.long_run_frames = 10  # images per chain in the strip
    # Domain feature distance `fd` (a classifier trained on the dataset's own labelled training split).
    e.fd = False
    e.fd_num_samples = 1000
    e.fd_reference_max = -1  # -1 = the whole training set
    e.fd_classifier_epochs = 30
    # FID / Inception Score with a local pytorch-fid Inception weights file (.npz, see metrics/inception.py).
    e.fid = False
    e.inception_weights = ""  # path; FID is skipped (and said so) without it
    e.fid_num_samples = 50000  # the papers' protocol
    e.fid_reference = "train"
    e.fid_reference_max = -1
    e.inception_batch_size = 50
    # Latent probes (ICCV 2023 Table 1): a 2-layer classifier per latent layer on inferred latents.
    e.probe = False
    e.probe_max_examples = 10000
    e.probe_epochs = 100
    e.cache_dir = ""  # "" = next to the data (tfds) or ~/.cache/latentebm_jax (embedded data)
    # Latent-space figures (ICCV 2023): hierarchical sampling, per-unit traversals, prior-vs-posterior
    # scatter of 2-d layers, latent attack per layer (methods with an inference network).
    e.hierarchy = False
    e.hierarchy_rows = 8  # base samples (rows) per panel
    e.traversal_units = 4  # units traversed per layer
    e.traversal_range = 3.0  # each unit swept over [-r, r] with the other units fixed
    e.attack_examples = 8
    e.attack_steps = 200
    e.attack_lr = 0.01
    e.attack_l2 = 0.1  # weight of ||delta||^2 in the attack objective

    # Diffusion hierarchical EBM prior (ICML 2024), two stages: 1 trains the hierarchical-VAE backbone,
    # 2 the per-layer time-conditioned EBMs on the frozen backbone read from `backbone_dir`.
    c.diffusion = df = ml_collections.ConfigDict()
    df.stage = 2
    df.backbone_dir = ""  # stage 2: the stage-1 run directory (its newest checkpoint)
    df.backbone_epochs = 150  # stage 1's training length (stage 2 uses train.num_epochs)
    df.backbone_lr = 1e-3
    df.backbone_beta1 = 0.9
    df.backbone_beta2 = 0.999
    df.backbone_weight_decay = 0.0
    df.prior_hidden = 256  # width of the conditional-prior MLPs p(z_i | z_{i+1})
    # "diffusion": Alg. 1 (conditional EBMs, Eq. 9); "marginal": the joint EBM on u-space (Eq. 8) baseline.
    df.scheme = "diffusion"
    df.num_diffusion_steps = 3  # T (ablation: 6)
    df.base_step = 3e-5  # b: Langevin variance s_t = b (sigma_bar_t / sigma_bar_0) sigma_{t+1}^2
    # "step": F = g / s_t (the authors' code); "none": F = g.
    df.energy_scale = "step"
    # Eq. 13 keeps the kernel at t = T-1 (the paper); the authors' code drops it (False).
    df.keep_last_kernel = True
    df.label_layers = ()  # layers z_i (1 = bottom) whose energies output class logits (Eq. 14)
    df.num_classes = 10
    df.label_weight = 1.0  # weight of the cross-entropy at t = 0 (App. A.2)
    # "first": couple y at t = 0 only (App. A.2); "all": at every diffusion step (an option; see README).
    df.label_steps = "first"
    # w in F_free + w log softmax(F)_y when sampling with labels; 1 is Eq. 14 exactly.
    df.label_guidance = 1.0
    df.temperature = 1.0
    # OOD by layer (Sec. 5.2, Fig. 3) and controllable synthesis (Sec. 5.3, Figs. 4-5), stage 2.
    e.ood = False  # also BiDVL: AUROC of -E(v) against each of bidvl.ood_sets (Table 4)
    e.ood_source = "holdout"  # "holdout" (data.holdout_class in the test split) or another dataset name
    e.ood_max_examples = 1000  # per side
    e.label_samples_per_class = 50
    e.compose_variations = 7

    # BiDVL (CVPR 2022): data-space conv energy, Gaussian inference net Q and generator P (with BatchNorm);
    # model.latent_dim, model.likelihood_sigma, model.ebm_spectral_norm and train.* are shared keys.
    c.bidvl = b = ml_collections.ConfigDict()
    b.enc_width = 48  # Qbasec: Q's first conv width (doubled per stage)
    b.gen_width = 48  # Pbasec: P's last hidden width is 2·Pbasec
    b.ebm_width = 64  # Ebasec
    b.energy_output = "softplus"  # E = softplus(net) >= 0 (the authors'); "identity": E = net
    b.basic_ratio = 0.05  # r' of Eq. 15 (Table 5: 0.05 at 32x32, 0.1 at 64x64)
    # Eq. 15's bias term: "none" (the paper's final choice, the authors' code), "sigmoid" (the paper's
    # surrogate), "self_normalized" (the batch estimate of Eq. 15 as written).
    b.bias = "none"
    # "offset": Eqs. 13-14 (the paper's main results); "not_offset": Eqs. 11-12 with Sec. 4.4's upper-level
    # KL for Q; "without": neither latent term (Table 6).
    b.offset = "offset"
    # latent reconstruction: "nll" = -log q(h|G(h)) (the paper); "code" = ||mu(G(h)) - h||^2 / d (authors)
    b.latent_loss = "nll"
    b.lower_steps = 1  # N of Algorithm 1
    # "lower_first": Algorithm 1 (the paper); "upper_first": the authors' code (energy step, then Q and P)
    b.order = "lower_first"
    b.eval_batch_stats = False  # True: BatchNorm uses batch statistics at evaluation (the authors' FID code)
    # OOD sets scored by -E(v) against the test split when eval.ood (Table 4): "uniform" (noise in [-1, 1]),
    # "holdout" (data.holdout_class of the test split) or a dataset name (same size and channels).
    b.ood_sets = ("uniform",)
    # Text LEBM (Sec. 3.2): the LSTM decoder p(x|z) of nets/text.py and the metrics of Table 2. The
    # decoder widths and dropout follow the text-VAE code bases (the paper does not give them).
    c.text = tx = ml_collections.ConfigDict()
    tx.embed_dim = 256
    tx.decoder_hidden = 512
    tx.dropout_in = 0.5
    tx.dropout_out = 0.5
    tx.temperature = 1.0  # sampling temperature of generated sentences (1 = the model)
    # FPPL: perplexity of fppl_samples generated sentences under an LSTM LM trained on the real training
    # text; RPPL: perplexity of the real test text under an LSTM LM trained on rppl_samples generated ones.
    tx.fppl_samples = 1000
    tx.rppl_samples = 10000
    tx.lm_embed_dim = 128
    tx.lm_hidden = 256
    tx.lm_dropout = 0.3
    tx.lm_epochs = 10
    tx.lm_batch_size = 64
    tx.lm_learning_rate = 1e-3
    # Marginal NLL -log p(x) by importance sampling (nll_samples > 0; 0 = off): a Gaussian proposal fitted
    # to nll_chains posterior chains per sentence, log Z(alpha) by log_partition_samples reference draws.
    tx.nll_samples = 64
    tx.nll_chains = 8
    tx.log_partition_samples = 100_000
    if method == "joint":
        _joint_svhn_defaults(c)
    elif method == "diffusion":
        _diffusion_cifar10_defaults(c)
    elif method == "bidvl":
        _bidvl_cifar10_defaults(c)
    elif method == "lebm_text":
        _lebm_text_ptb_defaults(c)
    return c


def _lebm_text_ptb_defaults(c: ml_collections.ConfigDict) -> None:
    """Text LEBM on PTB (Sec. 3.2, Table 2). The paper gives K0 = 40 (Sec. 3.3); the other values are the
    image LEBM's sampler and optimiser and the text-VAE conventions (10k vocabulary from the PTB files,
    latent 32, batch 32): the authors' text settings are not published with the seed or official code."""
    c.data.name = "ptb"
    c.data.train_split = "train"
    c.data.test_split = "test"
    c.data.max_len = 40
    c.data.min_count = 1
    c.model.latent_dim = 32
    c.model.ebm_hidden = 200
    c.model.ebm_layers = 2
    c.sampler.prior_steps = 40
    # The posterior chain through the LSTM runs faster as a loop than unrolled on XLA:CPU (toy corpus,
    # batch 100: 0.57 against 0.75 s per step, compiled in 6.6 against 12.6 s).
    c.sampler.posterior_unroll = 1
    c.train.batch_size = 32
    c.train.num_epochs = 40
    c.train.lr_ebm = 2e-5
    c.train.lr_gen = 1e-3
    c.train.grad_clip_norm = 5.0
    c.train.log_every = 50
    c.eval.long_run_steps = (40, 100)  # Table 3 decodes the chain every few steps up to K0 = 40
    c.eval.long_run_chains = 4
    c.eval.long_run_frames = 10


def _joint_svhn_defaults(c: ml_collections.ConfigDict) -> None:
    """The joint hierarchical prior on SVHN, the authors' train_fid.py (5 latent layers of 10)."""
    c.seed = 1234
    c.data.train_split = "extra"  # 531,131 images
    m = c.model
    m.ebm_hidden = 100
    m.ebm_layers = 2
    m.ebm_activation = "lrelu"
    m.ebm_spectral_norm = True
    m.likelihood_sigma = (1.0 / 20.0) ** 0.5  # reconstruction weight Gfactor = 1/(2σ²) = 10
    s = c.sampler
    s.prior_steps = 100
    s.prior_step_size = 0.3
    t = c.train
    t.num_epochs = 200
    t.lr_ebm = 2e-6
    t.lr_gen = 3e-4  # one Adam over generator and inference network
    t.beta1 = 0.0
    t.beta2 = 0.9
    t.weight_decay_ebm = 0.0
    t.weight_decay_gen = 5e-4
    t.lr_decay = 0.998
    t.lr_decay_at = "epoch_start"
    c.eval.probe = True
    c.eval.hierarchy = True


def _diffusion_cifar10_defaults(c: ml_collections.ConfigDict) -> None:
    """The authors' CIFAR-10 stage-2 settings (official-defaults §3.1) on a 3-layer hierarchical VAE."""
    c.data.name = "cifar10"
    c.data.train_split = "train"
    m = c.model
    m.latent_dims = (20, 20, 20)  # [uncertain] the paper's 3-layer backbone sizes are not published
    m.hier_widths = (64, 128, 256, 512)
    m.likelihood_sigma = (1.0 / 20.0) ** 0.5
    m.ebm_hidden = 128  # ch
    m.ebm_layers = 2  # dense blocks
    m.ebm_spectral_norm = True
    c.sampler.prior_steps = 50  # K per diffusion step
    c.sampler.prior_step_size = 0.1  # the marginal scheme's Langevin step (noise std)
    t = c.train
    t.batch_size = 50
    t.num_epochs = 200
    t.lr_ebm = 4e-5
    t.beta1 = 0.99
    t.beta2 = 0.999
    t.weight_decay_ebm = 3e-5
    t.lr_decay = 0.9
    t.lr_decay_at = "epoch_end"
    c.eval.probe = True


def _bidvl_cifar10_defaults(c: ml_collections.ConfigDict) -> None:
    """BiDVL on CIFAR-10, the authors' train_cifar_BiDVL.py (official-defaults §4.1): h in R^100, widths
    Q/P/E 48/48/64, Adam betas (0, 0.9), lr E 1e-4 / QP 3e-4, weight decay QP 1e-4 (coupled), decay 0.998
    per epoch (start), 600 epochs of batch 100, no clipping; OOD against noise, SVHN and CelebA (Table 4)."""
    c.data.name = "cifar10"
    c.data.train_split = "train"
    m = c.model
    m.latent_dim = 100
    m.ebm_spectral_norm = True
    m.likelihood_sigma = 0.5**0.5  # ||v - G(h)||^2 / (2 sigma^2) = the authors' plain sum of squares
    t = c.train
    t.batch_size = 100
    t.num_epochs = 600
    t.lr_ebm = 1e-4
    t.lr_gen = 3e-4
    t.beta1 = 0.0
    t.beta2 = 0.9
    t.weight_decay_ebm = 0.0
    t.weight_decay_gen = 1e-4
    t.lr_decay = 0.998
    t.lr_decay_at = "epoch_start"
    t.grad_clip_norm = 0.0
    c.eval.ood = True
    c.eval.ood_max_examples = 10000
    c.bidvl.ood_sets = ("uniform", "svhn_cropped", "celeb_a")


def _positive(x) -> bool:
    return x > 0


CHOICES = {
    "method": METHODS,
    "data.name": DATASETS + TEXT_DATASETS,
    "data.crop": ("none", "celeba_lebm", "center160"),
    "data.resize_method": ("bilinear", "pad"),
    "data.channels": (1, 3),
    "model.generator": ("dcgan", "small8"),
    "model.ebm_activation": ("gelu", "lrelu", "silu"),
    "model.generator_loss": ("gaussian_nll", "sum_squared"),
    "model.conv_impl": ("fast", "winograd", "subpixel", "direct", "xla"),
    "model.hier_merge": ("concat", "sum"),
    "model.kl_estimator": ("analytic", "sample"),
    "train.lr_decay_at": ("epoch_end", "epoch_start"),
    "diffusion.stage": (1, 2),
    "diffusion.scheme": ("diffusion", "marginal"),
    "diffusion.energy_scale": ("step", "none"),
    "diffusion.label_steps": ("first", "all"),
    "eval.fid_reference": ("train", "test"),
    "bidvl.energy_output": ("softplus", "identity"),
    "bidvl.bias": ("none", "sigmoid", "self_normalized"),
    "bidvl.offset": ("offset", "not_offset", "without"),
    "bidvl.latent_loss": ("nll", "code"),
    "bidvl.order": ("lower_first", "upper_first"),
}

CHECKS = {
    "data.image_size": (lambda x: x in (8, 16, 32, 64, 128), "one of 8, 16, 32, 64, 128"),
    "data.holdout_class": (lambda x: x >= -1, "-1 (none) or a class index"),
    "model.latent_dim": (_positive, "a positive integer"),
    "model.ngf": (_positive, "a positive integer"),
    "model.ebm_hidden": (lambda x: x >= 0, "a non-negative integer (0 = Gaussian prior, joint only)"),
    "model.latent_dims": (
        lambda x: len(x) >= 2 and all(isinstance(d, int) and d > 0 for d in x),
        "a tuple of at least 2 positive integers (bottom layer first)",
    ),
    "model.hier_widths": (
        lambda x: all(isinstance(w, int) and w > 0 for w in x),
        "a tuple of positive integers",
    ),
    "data.classes": (lambda x: all(isinstance(k, int) and k >= 0 for k in x), "a tuple of class indices"),
    "eval.hierarchy_rows": (_positive, "a positive integer"),
    "eval.traversal_units": (_positive, "a positive integer"),
    "eval.traversal_range": (_positive, "positive"),
    "eval.attack_examples": (_positive, "a positive integer"),
    "eval.attack_steps": (lambda x: x >= 0, "a non-negative integer"),
    "eval.attack_lr": (_positive, "positive"),
    "eval.attack_l2": (lambda x: x >= 0, "non-negative"),
    "model.ebm_layers": (lambda x: x >= 0, "a non-negative integer"),
    "model.likelihood_sigma": (_positive, "positive"),
    "model.prior_sigma": (_positive, "positive"),
    "sampler.init_sigma": (_positive, "positive"),
    "sampler.prior_steps": (lambda x: x >= 0, "a non-negative integer"),
    "sampler.posterior_steps": (lambda x: x >= 0, "a non-negative integer"),
    "sampler.prior_step_size": (_positive, "positive"),
    "sampler.posterior_step_size": (_positive, "positive"),
    "sampler.prior_unroll": (lambda x: x >= 0, "a non-negative integer (0 = fully unrolled)"),
    "sampler.posterior_unroll": (lambda x: x >= 0, "a non-negative integer (0 = fully unrolled)"),
    "train.batch_size": (_positive, "a positive integer"),
    "train.num_epochs": (_positive, "a positive integer"),
    "train.lr_ebm": (lambda x: x >= 0, "non-negative"),
    "train.lr_gen": (lambda x: x >= 0, "non-negative"),
    "train.beta1": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "train.beta2": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "train.lr_decay": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "train.weight_decay_ebm": (lambda x: x >= 0, "non-negative"),
    "train.weight_decay_gen": (lambda x: x >= 0, "non-negative"),
    "train.grad_clip_norm": (lambda x: x >= 0, "non-negative (0 = off)"),
    "train.log_every": (_positive, "a positive integer"),
    "train.eval_every": (lambda x: x >= 0, "a non-negative integer (0 = only at the end)"),
    "train.ckpt_every": (_positive, "a positive integer"),
    "train.keep_checkpoints": (_positive, "a positive integer"),
    "eval.batch_size": (_positive, "a positive integer"),
    "eval.num_samples": (_positive, "a positive integer"),
    "eval.long_run_chains": (_positive, "a positive integer"),
    "eval.long_run_frames": (_positive, "a positive integer"),
    "eval.fd_num_samples": (lambda x: x >= 2, "an integer >= 2"),
    "eval.fid_num_samples": (lambda x: x >= 10, "an integer >= 10"),
    "eval.fd_classifier_epochs": (_positive, "a positive integer"),
    "eval.inception_batch_size": (_positive, "a positive integer"),
    "eval.probe_epochs": (_positive, "a positive integer"),
    "diffusion.backbone_epochs": (_positive, "a positive integer"),
    "diffusion.backbone_lr": (_positive, "positive"),
    "diffusion.backbone_beta1": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "diffusion.backbone_beta2": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "diffusion.backbone_weight_decay": (lambda x: x >= 0, "non-negative"),
    "diffusion.prior_hidden": (_positive, "a positive integer"),
    "diffusion.num_diffusion_steps": (lambda x: x >= 2, "an integer >= 2 (the authors' schedule)"),
    "diffusion.base_step": (_positive, "positive"),
    "diffusion.num_classes": (lambda x: x >= 2, "an integer >= 2"),
    "diffusion.label_weight": (lambda x: x >= 0, "non-negative"),
    "diffusion.label_guidance": (lambda x: x >= 0, "non-negative"),
    "diffusion.temperature": (_positive, "positive"),
    "diffusion.label_layers": (
        lambda x: all(isinstance(i, int) and i >= 1 for i in x),
        "a tuple of layer numbers (1 = bottom z_1)",
    ),
    "eval.ood_max_examples": (lambda x: x >= 2, "an integer >= 2"),
    "eval.label_samples_per_class": (_positive, "a positive integer"),
    "eval.compose_variations": (_positive, "a positive integer"),
    "eval.long_run_steps": (
        lambda x: all(isinstance(k, int) and k > 0 for k in x),
        "a tuple of positive integers",
    ),
    "data.max_len": (lambda x: x >= 3, "an integer >= 3 (<bos>, a word, <eos>)"),
    "data.min_count": (_positive, "a positive integer"),
    "text.embed_dim": (_positive, "a positive integer"),
    "text.decoder_hidden": (_positive, "a positive integer"),
    "text.dropout_in": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "text.dropout_out": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "text.temperature": (lambda x: x >= 0, "non-negative (0 = greedy)"),
    "text.fppl_samples": (lambda x: x >= 1, "a positive integer"),
    "text.rppl_samples": (lambda x: x >= 10, "an integer >= 10"),
    "text.lm_embed_dim": (_positive, "a positive integer"),
    "text.lm_hidden": (_positive, "a positive integer"),
    "text.lm_dropout": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "text.lm_epochs": (_positive, "a positive integer"),
    "text.lm_batch_size": (_positive, "a positive integer"),
    "text.lm_learning_rate": (_positive, "positive"),
    "text.nll_samples": (lambda x: x >= 0, "a non-negative integer (0 = off)"),
    "text.nll_chains": (lambda x: x >= 2, "an integer >= 2"),
    "text.log_partition_samples": (_positive, "a positive integer"),
    "bidvl.enc_width": (_positive, "a positive integer"),
    "bidvl.gen_width": (_positive, "a positive integer"),
    "bidvl.ebm_width": (_positive, "a positive integer"),
    "bidvl.basic_ratio": (lambda x: x >= 0, "non-negative"),
    "bidvl.lower_steps": (_positive, "a positive integer (N of Algorithm 1)"),
    "bidvl.ood_sets": (
        lambda x: all(s in BIDVL_OOD_SETS for s in x),
        f"a tuple of names from {list(BIDVL_OOD_SETS)}",
    ),
}


def validate(config: ml_collections.ConfigDict) -> None:
    """Validate ``config`` against this schema (keys, types, :data:`CHOICES`, :data:`CHECKS`, cross-field)."""
    from latentebm_jax.training.validation import ConfigError, validate_config

    if config.get("method") not in METHODS:
        raise ConfigError(
            f"config key 'method' has value {config.get('method')!r}; allowed values: {list(METHODS)}"
        )
    validate_config(config, get_config(config.method), CHOICES, CHECKS)
    if config.model.generator == "small8" and config.data.image_size != 8:
        raise ConfigError(
            f"config key 'model.generator' is 'small8' (8×8 images) but 'data.image_size' is "
            f"{config.data.image_size}; use 'dcgan' or data.image_size=8"
        )
    if config.method == "lebm" and config.model.ebm_hidden == 0:
        raise ConfigError(
            "config key 'model.ebm_hidden' is 0 (no EBM), which only method 'joint' supports; "
            "LEBM needs a positive width"
        )
    _validate_modality(config)
    if config.method in ("joint", "diffusion"):
        _validate_joint(config)
    if config.method == "diffusion":
        _validate_diffusion(config)
    if config.method == "bidvl":
        _validate_bidvl(config)
    if (
        config.data.classes
        and config.data.holdout_class >= 0
        and (config.data.holdout_class not in config.data.classes)
    ):
        raise ConfigError(
            f"config key 'data.holdout_class' = {config.data.holdout_class} is not among "
            f"'data.classes' = {tuple(config.data.classes)}"
        )
    attrs = tuple(config.data.attributes)
    if attrs:
        from latentebm_jax.data import CELEBA_ATTRIBUTES

        unknown = [a for a in attrs if a not in CELEBA_ATTRIBUTES]
        if config.data.name != "celeb_a" or unknown:
            raise ConfigError(
                f"config key 'data.attributes' = {attrs}: attributes exist for celeb_a only, named from "
                f"{list(CELEBA_ATTRIBUTES)}" + (f"; unknown: {unknown}" if unknown else "")
            )
    if config.eval.anomaly and config.data.holdout_class < 0:
        raise ConfigError(
            "config key 'eval.anomaly' is True but 'data.holdout_class' is -1; set the class to hold out"
        )


def _validate_modality(config: ml_collections.ConfigDict) -> None:
    """Text corpora go with lebm_text, images with the other methods; image-only evaluations are off."""
    from latentebm_jax.training.validation import ConfigError

    text_method, text_data = config.method == "lebm_text", config.data.name in TEXT_DATASETS
    if text_method and not text_data:
        raise ConfigError(
            f"config key 'data.name' is {config.data.name!r}, an image dataset; method 'lebm_text' needs a "
            f"text corpus: one of {list(TEXT_DATASETS)}"
        )
    if text_data and not text_method:
        raise ConfigError(
            f"config key 'data.name' is the text corpus {config.data.name!r}; method {config.method!r} "
            f"models images: use method 'lebm_text' (e.g. configs/text_toy.py)"
        )
    if not text_method:
        return
    if config.data.holdout_class >= 0 or tuple(config.data.classes) or tuple(config.data.attributes):
        raise ConfigError(
            "config keys 'data.holdout_class', 'data.classes' and 'data.attributes' select image classes; "
            "text corpora have none (set -1, (), ())"
        )
    for key in ("anomaly", "fd", "fid", "probe", "hierarchy", "ood"):
        if config.eval[key]:
            raise ConfigError(
                f"config key 'eval.{key}' is True, an image evaluation; method 'lebm_text' reports NLL, "
                f"FPPL and RPPL instead (set it to False)"
            )
    for key in ("train_split", "test_split"):
        if config.data[key] not in ("train", "valid", "test"):
            raise ConfigError(
                f"config key 'data.{key}' has value {config.data[key]!r}; text splits: train, valid, test"
            )


def _validate_joint(config: ml_collections.ConfigDict) -> None:
    from latentebm_jax.training.validation import ConfigError

    m, n = config.model, len(config.model.latent_dims)
    if len(m.hier_widths) != n + 1:
        raise ConfigError(
            f"config key 'model.hier_widths' has {len(m.hier_widths)} values but 'model.latent_dims' has "
            f"{n} layers; give c_1..c_L and the top MLP width ({n + 1} values)"
        )
    size = config.data.image_size
    if size % 2 ** (n - 1):
        raise ConfigError(
            f"config key 'model.latent_dims' has {n} layers, but 'data.image_size' = {size} does not halve "
            f"{n - 1} times; use at most {_max_layers(size)} layers"
        )


def _validate_diffusion(config: ml_collections.ConfigDict) -> None:
    from latentebm_jax.training.validation import ConfigError

    df, n = config.diffusion, len(config.model.latent_dims)
    bad = [i for i in df.label_layers if i > n]
    if bad:
        raise ConfigError(
            f"config key 'diffusion.label_layers' = {tuple(df.label_layers)} names layers beyond the "
            f"{n} latent layers (1 = bottom, {n} = top)"
        )
    attrs = tuple(config.data.attributes)
    if attrs and len(attrs) != len(df.label_layers):
        raise ConfigError(
            f"config key 'data.attributes' = {attrs} needs one layer each in 'diffusion.label_layers' "
            f"(in the same order), got {tuple(df.label_layers)}"
        )
    if attrs and df.num_classes != 2:
        raise ConfigError("config key 'diffusion.num_classes' must be 2 with binary 'data.attributes'")
    if df.label_layers and not attrs and config.data.name == "celeb_a":
        raise ConfigError(
            "config key 'diffusion.label_layers' needs labels, and celeb_a has no classes: name binary "
            "attributes in 'data.attributes', e.g. ('Male', 'Smiling', 'Blond_Hair') with label_layers "
            "(3, 2, 1)"
        )
    if config.model.ebm_hidden == 0:
        raise ConfigError("config key 'model.ebm_hidden' must be positive for method 'diffusion'")
    source = config.eval.ood_source
    if source != "holdout" and source not in DATASETS:
        raise ConfigError(
            f"config key 'eval.ood_source' has value {source!r}; allowed: 'holdout' or one of "
            f"{list(DATASETS)}"
        )
    if config.eval.ood and source == "holdout" and config.data.holdout_class < 0:
        raise ConfigError(
            "config key 'eval.ood' with eval.ood_source='holdout' needs 'data.holdout_class' >= 0"
        )


def _validate_bidvl(config: ml_collections.ConfigDict) -> None:
    from latentebm_jax.training.validation import ConfigError

    sets = tuple(config.bidvl.ood_sets)
    if config.eval.ood and not sets:
        raise ConfigError(
            "config key 'eval.ood' is True but 'bidvl.ood_sets' is empty; name at least one set"
        )
    if config.eval.ood and "holdout" in sets and config.data.holdout_class < 0:
        raise ConfigError(
            "config key 'bidvl.ood_sets' names 'holdout' but 'data.holdout_class' is -1; set the class"
        )


def _max_layers(size: int) -> int:
    n = 1
    while size % 2**n == 0 and size // 2**n >= 1:
        n += 1
    return n
