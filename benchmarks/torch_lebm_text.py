"""A PyTorch eager text-LEBM train step: the reference the JAX ``lebm_text`` step is timed against.

The LEBM authors published no text code (bpucla/latent-space-EBM-prior has the SVHN and CelebA scripts only),
so the iteration is the one of their ``train_svhn.py`` (LEBM Algorithm 1: both chains with the parameters
from before the updates, then the generator step, then the EBM step; ``autograd.grad`` inside the Langevin
loops) over the text-VAE LSTM decoder the paper follows for ``p_β(x|z)`` (Eq. 4; He et al. 2019,
jxhe/vae-lagging-encoder ``LSTMDecoder``: ``torch.nn.LSTM``, ``batch_first``), with the same equations as
:mod:`latentebm_jax.methods.lebm_text`:

* decoder: ``c₀ = W z + b``, ``h₀ = tanh(c₀)``; input at step ``t`` is ``[dropout_in(embed(x_{t−1})), z]``;
  logits ``Linear(dropout_out(h_t))`` with ``<pad>``/``<bos>`` masked to ``−10⁹``;
  ``log p_β(x|z) = Σ_t log softmax(logits_t)[x_t]`` over the ``lengths − 1`` targets (Eq. 4);
* energy ``f_α``: ``Linear(n_z, 200) → GELU → Linear(200, 200) → GELU → Linear(200, 1)`` (exact GELU);
* prior Langevin ``z ← z + (s₀²/2)(∇f_α(z) − z/σ_p²) + s₀ ε`` for ``K₀`` steps; posterior Langevin
  ``z ← z + (s₁²/2)∇_z[f_α(z) − ‖z‖²/(2σ_p²) + log p_β(x|z)] + s₁ ε`` for ``K₁`` steps (Eq. 9 in the code's
  step convention), both from ``N(0, σ_init² I)``, the decoder without dropout (eval mode);
* decoder loss ``−mean_b log p_β(x_b|z⁺_b)`` with dropout (Eq. 11), EBM loss
  ``mean f_α(z⁻) − mean f_α(z⁺)`` (Eq. 10); each network's gradient clipped to global norm ``grad_clip_norm``
  (``clip_grad_norm_``) before its Adam step.

Two places where ``torch.nn`` and the library's Flax modules are parameterised differently, mapped so that
both compute one function with one set of trainable weights:

* gates: ``nn.LSTM`` stacks the four gate matrices as rows ``[i, f, g, o]`` of ``weight_ih_l0``
  ``(4H, in)`` and ``weight_hh_l0`` ``(4H, H)``; Flax's ``LSTMCell`` keeps one ``Dense`` per gate
  (``ii, if, ig, io`` on the input, kernels ``(in, H)``; ``hi, hf, hg, ho`` on ``h``);
* biases: ``nn.LSTM`` adds two bias vectors, ``bias_ih + bias_hh``; Flax has one per gate (on the
  recurrent ``Dense``). Training both torch biases would move the sum by twice Adam's step, so
  ``bias_ih_l0`` is held at zero and frozen and ``bias_hh_l0`` carries Flax's bias.

For the equivalence test (``tests/test_bench_lebm_text.py``) every Gaussian draw goes through the injectable
``randn(shape)``, and :meth:`TorchLEBMText.load_flax_params` / :meth:`TorchLEBMText.flax_params` move weights
from and to the library's parameter tree. Only :mod:`benchmarks` imports torch (from the ``bench`` extra).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

PAD_ID, BOS_ID = 0, 2  # latentebm_jax.data.text: <pad>, <bos> (never targets: masked logits)
MASKED_LOGIT = -1e9  # latentebm_jax.nets.text.MASKED_LOGIT
GATES = ("i", "f", "g", "o")  # nn.LSTM's row order of the stacked gate matrices


@dataclasses.dataclass(frozen=True)
class TextStepSettings:
    """The text LEBM's settings; the benchmark fills them from ``configs/ptb.py`` (PTB defaults here)."""

    batch: int = 32
    vocab_size: int = 10_003
    max_len: int = 82
    latent_dim: int = 32
    embed_dim: int = 256
    hidden: int = 512
    ebm_hidden: int = 200
    prior_steps: int = 40
    prior_step_size: float = 0.4
    posterior_steps: int = 20
    posterior_step_size: float = 0.1
    sigma_p: float = 1.0
    init_sigma: float = 1.0
    dropout_in: float = 0.5
    dropout_out: float = 0.5
    lr_gen: float = 1e-3
    lr_ebm: float = 2e-5
    beta1: float = 0.5
    beta2: float = 0.999
    grad_clip_norm: float = 5.0


class TorchLSTMDecoder(nn.Module):
    """``p_β(x|z)`` (LEBM Eq. 4): the text-VAE LSTM decoder, teacher forced over whole rows."""

    def __init__(self, s: TextStepSettings):
        super().__init__()
        self.embed = nn.Embedding(s.vocab_size, s.embed_dim)
        self.init_state = nn.Linear(s.latent_dim, s.hidden)
        self.lstm = nn.LSTM(s.embed_dim + s.latent_dim, s.hidden, batch_first=True)
        self.out = nn.Linear(s.hidden, s.vocab_size)
        self.dropout_in = nn.Dropout(s.dropout_in)
        self.dropout_out = nn.Dropout(s.dropout_out)
        with torch.no_grad():
            self.lstm.bias_ih_l0.zero_()
        self.lstm.bias_ih_l0.requires_grad_(False)  # one trainable bias per gate, as Flax's LSTMCell
        masked = torch.zeros(s.vocab_size, dtype=torch.bool)
        masked[[PAD_ID, BOS_ID]] = True
        self.register_buffer("masked", masked)

    def log_likelihood(self, z: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``Σ_t log p_β(x^(t) | x^(<t), z)`` per sentence, ``(B,)``; targets past ``lengths`` ignored."""
        inputs, targets = ids[:, :-1], ids[:, 1:]
        emb = self.dropout_in(self.embed(inputs))
        x = torch.cat([emb, z[:, None, :].expand(-1, inputs.shape[1], -1)], dim=-1)
        c0 = self.init_state(z)
        h, _ = self.lstm(x, (torch.tanh(c0)[None], c0[None]))
        logits = self.out(self.dropout_out(h)).masked_fill(self.masked, MASKED_LOGIT)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]
        valid = torch.arange(1, ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        return torch.where(valid, logp, torch.zeros_like(logp)).sum(dim=1)


def torch_energy(s: TextStepSettings) -> nn.Module:
    """``f_α``: the authors' MLP energy network (two GELU hidden layers)."""
    h = s.ebm_hidden
    return nn.Sequential(nn.Linear(s.latent_dim, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class TorchLEBMText:
    """Networks, optimisers and one eager train step (:meth:`step`); the chains alone for timing.

    ``randn(shape) -> Tensor`` draws every Gaussian (chain starts and Langevin noise); default
    ``torch.randn``.
    """

    def __init__(
        self,
        s: TextStepSettings,
        seed: int = 0,
        randn: Callable[[tuple[int, ...]], torch.Tensor] | None = None,
    ):
        torch.manual_seed(seed)
        self.s = s
        self.randn = randn or (lambda shape: torch.randn(*shape))
        self.decoder = TorchLSTMDecoder(s)
        self.ebm = torch_energy(s)
        betas = (s.beta1, s.beta2)
        self.opt_dec = torch.optim.Adam(_trainable(self.decoder), lr=s.lr_gen, betas=betas)
        self.opt_ebm = torch.optim.Adam(_trainable(self.ebm), lr=s.lr_ebm, betas=betas)

    # ------------------------------------------------------------------------- densities and chains

    def f(self, z: torch.Tensor) -> torch.Tensor:
        return self.ebm(z).squeeze(-1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``f_α(z) − ‖z‖²/(2σ_p²)`` per chain (Eq. 2 up to constants)."""
        return self.f(z) - 0.5 * (z * z).sum(-1) / self.s.sigma_p**2

    @contextlib.contextmanager
    def _chain_mode(self) -> Iterator[None]:
        """Inside the chains: EBM weights frozen, decoder without dropout (eval mode)."""
        for p in self.ebm.parameters():
            p.requires_grad_(False)
        self.decoder.eval()
        try:
            yield
        finally:
            self.decoder.train()
            for p in self.ebm.parameters():
                p.requires_grad_(True)

    def _langevin(self, log_p: Callable[[torch.Tensor], torch.Tensor], n: int, steps: int, size: float):
        """``steps`` of ``z ← z + (s²/2)∇ log π(z) + s ε`` from ``N(0, σ_init² I)`` (Eq. 9; per-chain
        gradients: of the batch sum)."""
        z = self.s.init_sigma * self.randn((n, self.s.latent_dim))
        for _ in range(steps):
            z = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(log_p(z).sum(), z)
            z = z + 0.5 * size**2 * grad + size * self.randn(tuple(z.shape))
        return z.detach()

    def sample_prior(self, n: int) -> torch.Tensor:
        """``z⁻``: ``K₀`` prior Langevin steps of size ``s₀``."""
        with self._chain_mode():
            return self._langevin(self.log_prior, n, self.s.prior_steps, self.s.prior_step_size)

    def sample_posterior(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``z⁺``: ``K₁`` posterior Langevin steps of size ``s₁`` on ``log p_α(z) + log p_β(x|z)``."""

        def log_joint(z: torch.Tensor) -> torch.Tensor:
            return self.log_prior(z) + self.decoder.log_likelihood(z, ids, lengths)

        with self._chain_mode():
            return self._langevin(log_joint, ids.shape[0], self.s.posterior_steps, self.s.posterior_step_size)

    # ------------------------------------------------------------------------- one iteration

    def _clip(self, module: nn.Module) -> torch.Tensor:
        """Clip the module's gradients to global norm ``grad_clip_norm`` (0 = off); their norm before."""
        max_norm = self.s.grad_clip_norm if self.s.grad_clip_norm > 0 else float("inf")
        return torch.nn.utils.clip_grad_norm_(_trainable(module), max_norm)

    def step(self, ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, float]:
        """One iteration of LEBM Algorithm 1 (both chains with the parameters from before the updates)."""
        z_neg = self.sample_prior(ids.shape[0])
        z_pos = self.sample_posterior(ids, lengths)

        self.opt_dec.zero_grad()
        loss_g = -self.decoder.log_likelihood(z_pos, ids, lengths).mean()
        loss_g.backward()
        grad_norm_g = self._clip(self.decoder)
        self.opt_dec.step()

        self.opt_ebm.zero_grad()
        f_pos, f_neg = self.f(z_pos), self.f(z_neg)
        loss_e = f_neg.mean() - f_pos.mean()
        loss_e.backward()
        grad_norm_e = self._clip(self.ebm)
        self.opt_ebm.step()
        return {
            "loss_g": loss_g.item(),
            "loss_e": loss_e.item(),
            "f_pos": f_pos.mean().item(),
            "f_neg": f_neg.mean().item(),
            "z_pos_norm": z_pos.norm(dim=-1).mean().item(),
            "z_neg_norm": z_neg.norm(dim=-1).mean().item(),
            "grad_norm_g": grad_norm_g.item(),
            "grad_norm_e": grad_norm_e.item(),
        }

    # ------------------------------------------------------------------------- weight transfer

    def load_flax_params(self, params: dict[str, Any]) -> None:
        """Copy the library's parameters ``{"ebm": …, "decoder": …}`` (Flax layout) into the torch modules."""
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))
        d, cell = params["decoder"], params["decoder"]["cell"]
        values = {
            self.decoder.embed.weight: t(d["embed"]["embedding"]),
            self.decoder.init_state.weight: t(d["init_state"]["kernel"]).T,
            self.decoder.init_state.bias: t(d["init_state"]["bias"]),
            self.decoder.out.weight: t(d["out"]["kernel"]).T,
            self.decoder.out.bias: t(d["out"]["bias"]),
            self.decoder.lstm.weight_ih_l0: torch.cat([t(cell[f"i{g}"]["kernel"]).T for g in GATES]),
            self.decoder.lstm.weight_hh_l0: torch.cat([t(cell[f"h{g}"]["kernel"]).T for g in GATES]),
            self.decoder.lstm.bias_hh_l0: torch.cat([t(cell[f"h{g}"]["bias"]) for g in GATES]),
            self.decoder.lstm.bias_ih_l0: torch.zeros_like(self.decoder.lstm.bias_ih_l0),
        }
        for i, layer in enumerate(self._ebm_linears()):
            dense = params["ebm"][f"TorchDense_{i}"]["Dense_0"]
            values[layer.weight] = t(dense["kernel"]).T
            values[layer.bias] = t(dense["bias"])
        with torch.no_grad():
            for p, v in values.items():
                if p.shape != v.shape:
                    raise ValueError(f"parameter of shape {tuple(p.shape)} gets a value of shape {v.shape}")
                p.copy_(v)

    def flax_params(self) -> dict[str, Any]:
        """The torch weights in the library's layout (NumPy), the inverse of :meth:`load_flax_params`."""
        a = lambda p: p.detach().numpy().copy()
        lstm = self.decoder.lstm
        w_ih, w_hh = lstm.weight_ih_l0.chunk(4), lstm.weight_hh_l0.chunk(4)
        bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).chunk(4)
        cell: dict[str, Any] = {}
        for k, g in enumerate(GATES):
            cell[f"i{g}"] = {"kernel": a(w_ih[k].T)}
            cell[f"h{g}"] = {"kernel": a(w_hh[k].T), "bias": a(bias[k])}
        dec = self.decoder
        decoder = {
            "cell": cell,
            "embed": {"embedding": a(dec.embed.weight)},
            "init_state": {"kernel": a(dec.init_state.weight.T), "bias": a(dec.init_state.bias)},
            "out": {"kernel": a(dec.out.weight.T), "bias": a(dec.out.bias)},
        }
        ebm = {
            f"TorchDense_{i}": {"Dense_0": {"kernel": a(layer.weight.T), "bias": a(layer.bias)}}
            for i, layer in enumerate(self._ebm_linears())
        }
        return {"ebm": ebm, "decoder": decoder}

    def _ebm_linears(self) -> list[nn.Linear]:
        return [m for m in self.ebm if isinstance(m, nn.Linear)]
