"""SMoE-VAE: a variational autoencoder whose decoder is a sparse mixture of experts.

A shared convolutional encoder maps a 28x28 sketch to a latent z. A gating MLP turns z into
expert logits, and each of the E expert decoders maps z back to an image. Training mixes all
experts' images with the softmax gate (soft gating). Evaluation decodes each sample with its
argmax expert only (hard gating), so the expert index is a clustering of the inputs.

Reference: Nikolic, Oguz, Psaltis, "Sparse Mixture-of-Experts VAE", arXiv:2509.10025.
The layer sizes below are that paper's configuration.

Routing modes:
    "learned"     soft gating in training, gate argmax in evaluation (the model under study).
    "supervised"  the gate is trained with cross-entropy on the class label (see smoe.losses).
                  Each sample is decoded by the gate's argmax expert in training and evaluation.
    "label"       oracle routing: each sample is decoded by the expert whose index is its label.

The experts execute either as a Python loop over experts ("loop") or as one set of batched
kernels over all experts ("grouped": grouped convolutions and batched matrix products).
"auto" picks "loop" on CPU, where bench/bench_model.py measures it as the faster one, and
"grouped" elsewhere, where kernel launches per expert dominate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ROUTINGS = ("learned", "supervised", "label")
EXPERT_IMPLS = ("auto", "loop", "grouped")

IMAGE_SIZE = 28
ENCODER_FEATURES = 128 * 7 * 7  # 6272: the third conv's 128 channels at 7x7
EXPERT_SEED_SHAPE = (8, 7, 7)  # each expert's Linear output, upsampled twice to 28x28
EXPERT_HIDDEN = 16


@dataclass
class SMoEOutput:
    """Everything one forward pass of SMoEVAE computes, B samples, E experts."""

    recon: torch.Tensor  # (B, 1, 28, 28) in (0, 1)
    mu: torch.Tensor  # (B, latent_dim)
    logvar: torch.Tensor  # (B, latent_dim)
    z: torch.Tensor  # (B, latent_dim), the latent that was decoded (mu when use_mean=True)
    gate_logits: torch.Tensor  # (B, E)
    gate_probs: torch.Tensor  # (B, E), softmax of gate_logits
    expert: torch.Tensor  # (B,) int64: the expert that decoded each sample (gate argmax under soft gating)
    routing: str  # the model's routing mode, which smoe_loss needs for the supervised term


class Encoder(nn.Module):
    """Shared conv encoder: (B, 1, 28, 28) -> mu, logvar (B, latent_dim)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1),  # (B, 32, 28, 28)
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),  # (B, 64, 14, 14)
            nn.ReLU(),
            nn.Conv2d(64, 128, kernel_size=3, stride=2, padding=1),  # (B, 128, 7, 7)
            nn.ReLU(),
            nn.Flatten(),  # (B, 6272)
        )
        self.mu = nn.Linear(ENCODER_FEATURES, latent_dim)
        self.logvar = nn.Linear(ENCODER_FEATURES, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class Gate(nn.Module):
    """Gating MLP: z (B, latent_dim) -> expert logits (B, E)."""

    def __init__(self, latent_dim: int, num_experts: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 64),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, num_experts),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ExpertDecoder(nn.Module):
    """One expert: z (B, latent_dim) -> image (B, 1, 28, 28) in (0, 1)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.fc = nn.Linear(latent_dim, EXPERT_SEED_SHAPE[0] * 7 * 7)
        self.conv1 = nn.Conv2d(EXPERT_SEED_SHAPE[0], EXPERT_HIDDEN, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(EXPERT_HIDDEN, 1, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, *EXPERT_SEED_SHAPE)  # (B, 8, 7, 7)
        h = F.interpolate(h, scale_factor=2, mode="nearest")  # (B, 8, 14, 14)
        h = F.elu(self.conv1(h))  # (B, 16, 14, 14)
        h = F.interpolate(h, scale_factor=2, mode="nearest")  # (B, 16, 28, 28)
        return torch.sigmoid(self.conv2(h))  # (B, 1, 28, 28)


class ExpertBank(nn.Module):
    """The E expert decoders, with a per-expert loop and a batched ("grouped") execution.

    Both executions use the same parameters (one ExpertDecoder per expert, so state dicts and
    parameter counts match the plain architecture) and agree to floating-point rounding.
    """

    def __init__(self, num_experts: int, latent_dim: int):
        super().__init__()
        self.experts = nn.ModuleList(ExpertDecoder(latent_dim) for _ in range(num_experts))

    def __len__(self) -> int:
        return len(self.experts)

    # Soft gating: every expert decodes every sample, mixed by the gate probabilities.

    def mix(self, z: torch.Tensor, weights: torch.Tensor, impl: str) -> torch.Tensor:
        """Return sum_e weights[:, e] * expert_e(z) as (B, 1, 28, 28); weights is (B, E)."""
        if impl == "loop":
            recon = 0
            for e, expert in enumerate(self.experts):
                recon = recon + weights[:, e, None, None, None] * expert(z)
            return recon
        images = self._decode_all_grouped(z)  # (B, E, 28, 28)
        return torch.einsum("be,behw->bhw", weights, images).unsqueeze(1)

    def _decode_all_grouped(self, z: torch.Tensor) -> torch.Tensor:
        num_experts, batch = len(self.experts), z.shape[0]
        fc_w, fc_b, c1_w, c1_b, c2_w, c2_b = self._stacked_parameters()

        # All experts' Linear layers as one matmul: (B, L) x (E, 392, L) -> (B, E, 392).
        h = torch.einsum("bl,eol->beo", z, fc_w) + fc_b
        h = h.reshape(batch, num_experts * EXPERT_SEED_SHAPE[0], 7, 7)  # channels grouped by expert
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = F.conv2d(h, c1_w.flatten(0, 1), c1_b.flatten(), padding=1, groups=num_experts)
        h = F.elu(h)  # (B, E * 16, 14, 14)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = F.conv2d(h, c2_w.flatten(0, 1), c2_b.flatten(), padding=1, groups=num_experts)
        return torch.sigmoid(h)  # (B, E, 28, 28)

    # Hard gating: each sample is decoded by one expert only.

    def route(self, z: torch.Tensor, expert: torch.Tensor, impl: str) -> torch.Tensor:
        """Decode sample i with expert[i] only; z (B, L), expert (B,) int64 -> (B, 1, 28, 28)."""
        if impl == "loop":
            return self._route_loop(z, expert)
        return self._route_grouped(z, expert)

    def _route_loop(self, z: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        # Sort samples by expert so each expert decodes one contiguous slice, then undo the sort.
        order = torch.argsort(expert, stable=True)
        sizes = torch.bincount(expert, minlength=len(self.experts)).tolist()
        parts = []
        for e, z_e in enumerate(torch.split(z[order], sizes)):
            if sizes[e] > 0:
                parts.append(self.experts[e](z_e))
        return torch.cat(parts)[torch.argsort(order)]

    def _route_grouped(self, z: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        # Gather each sample's expert weights and run one grouped conv with a group per sample:
        # no host synchronization and no per-expert kernels.
        batch = z.shape[0]
        fc_w, fc_b, c1_w, c1_b, c2_w, c2_b = self._stacked_parameters()
        h = torch.einsum("bl,bol->bo", z, fc_w[expert]) + fc_b[expert]  # (B, 392)
        h = h.reshape(1, batch * EXPERT_SEED_SHAPE[0], 7, 7)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = F.conv2d(h, c1_w[expert].flatten(0, 1), c1_b[expert].flatten(), padding=1, groups=batch)
        h = F.elu(h)  # (1, B * 16, 14, 14)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = F.conv2d(h, c2_w[expert].flatten(0, 1), c2_b[expert].flatten(), padding=1, groups=batch)
        return torch.sigmoid(h).view(batch, 1, IMAGE_SIZE, IMAGE_SIZE)

    def _stacked_parameters(self) -> tuple[torch.Tensor, ...]:
        # torch.stack is differentiable, so gradients reach each expert's own parameters.
        experts = self.experts
        return (
            torch.stack([m.fc.weight for m in experts]),  # (E, 392, L)
            torch.stack([m.fc.bias for m in experts]),  # (E, 392)
            torch.stack([m.conv1.weight for m in experts]),  # (E, 16, 8, 3, 3)
            torch.stack([m.conv1.bias for m in experts]),  # (E, 16)
            torch.stack([m.conv2.weight for m in experts]),  # (E, 1, 16, 3, 3)
            torch.stack([m.conv2.bias for m in experts]),  # (E, 1)
        )


class SMoEVAE(nn.Module):
    """VAE with a shared encoder, a gating MLP and E expert decoders.

    Parameters
    ----------
    num_experts : int
        Number of expert decoders E (>= 1).
    latent_dim : int
        Size of z (the paper uses 32).
    routing : {"learned", "supervised", "label"}
        How samples reach experts; see the module docstring. "supervised" and "label" map
        expert e to category e, so they need num_experts equal to the number of categories,
        which the trainer checks.
    expert_impl : {"auto", "loop", "grouped"}
        How the experts execute; "auto" chooses by the device of the input.
    """

    def __init__(
        self,
        num_experts: int,
        latent_dim: int = 32,
        routing: str = "learned",
        expert_impl: str = "auto",
    ):
        super().__init__()
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be an int >= 1, got {num_experts!r}")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be an int >= 1, got {latent_dim!r}")
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        if expert_impl not in EXPERT_IMPLS:
            raise ValueError(f"expert_impl must be one of {', '.join(EXPERT_IMPLS)}, got {expert_impl!r}")

        self.num_experts = num_experts
        self.latent_dim = latent_dim
        self.routing = routing
        self.expert_impl = expert_impl

        self.encoder = Encoder(latent_dim)
        self.gate = Gate(latent_dim, num_experts)
        self.decoder = ExpertBank(num_experts, latent_dim)

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        use_mean: bool = False,
    ) -> SMoEOutput:
        """Encode, route and decode a batch.

        Parameters
        ----------
        x : Tensor (B, 1, 28, 28), float in [0, 1]
        labels : Tensor (B,) int64, optional
            Category indices; required for routing="label".
        generator : torch.Generator, optional
            Source of the reparameterization noise. Passing a freshly seeded generator makes
            the sampled z, and so hard-gated evaluation, repeat exactly. The noise is drawn on
            the generator's device and moved to x's device.
        use_mean : bool
            Decode (and route) from z = mu instead of a sample.
        """
        self._check_inputs(x, labels)

        mu, logvar = self.encoder(x)
        if use_mean:
            z = mu
        else:
            z = mu + torch.exp(0.5 * logvar) * self._standard_normal(mu, generator)

        gate_logits = self.gate(z)
        gate_probs = torch.softmax(gate_logits, dim=1)
        impl = self._resolve_impl(x.device)

        if self.routing == "label":
            expert = labels.to(device=x.device, dtype=torch.long)
            recon = self.decoder.route(z, expert, impl)
        elif self.routing == "supervised" or not self.training:
            expert = gate_probs.argmax(dim=1)
            recon = self.decoder.route(z, expert, impl)
        else:
            expert = gate_probs.detach().argmax(dim=1)
            recon = self.decoder.mix(z, gate_probs, impl)

        return SMoEOutput(
            recon=recon,
            mu=mu,
            logvar=logvar,
            z=z,
            gate_logits=gate_logits,
            gate_probs=gate_probs,
            expert=expert,
            routing=self.routing,
        )

    def _check_inputs(self, x: torch.Tensor, labels: torch.Tensor | None) -> None:
        shape = (1, IMAGE_SIZE, IMAGE_SIZE)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (B, 1, 28, 28), got {got}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a float tensor in [0, 1], got dtype {x.dtype}")
        if self.routing != "label":
            return

        if labels is None:
            raise ValueError('routing="label" needs labels: call model(x, labels)')
        if labels.shape != (x.shape[0],):
            raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_experts):
            bad = labels[(labels < 0) | (labels >= self.num_experts)][0].item()
            raise ValueError(
                f'labels must lie in [0, {self.num_experts}) for routing="label" with '
                f"{self.num_experts} experts, got {bad}"
            )

    @staticmethod
    def _standard_normal(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is None:
            return torch.randn_like(like)
        noise = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
        return noise.to(like.device)

    def _resolve_impl(self, device: torch.device) -> str:
        if self.expert_impl != "auto":
            return self.expert_impl
        return "loop" if device.type == "cpu" else "grouped"
