"""The SMoE-VAE training objective.

    total = recon + beta * kl + lambda_balance * balance + lambda_entropy * entropy
            (+ lambda_supervised * supervised for routing="supervised")

recon and kl are summed over the batch, not averaged, because the paper's weights
(beta 0.1, lambda_balance 200, lambda_entropy 400 at batch size 128; Nikolic, Oguz, Psaltis,
arXiv:2509.10025) are calibrated against batch sums. balance and entropy are per-batch
statistics of the gate and do not grow with the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smoe.model import SMoEOutput

ENTROPY_EPS = 1e-8  # inside the log of the gate entropy, so p = 0 contributes 0 and not NaN


def smoe_loss(
    x: torch.Tensor,
    out: SMoEOutput,
    *,
    beta: float,
    lambda_balance: float,
    lambda_entropy: float,
    labels: torch.Tensor | None = None,
    lambda_supervised: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Compute the weighted SMoE-VAE loss and its unweighted terms.

    Parameters
    ----------
    x : Tensor (B, 1, 28, 28)
        The input batch, the reconstruction target.
    out : SMoEOutput
        The model's output for x.
    beta, lambda_balance, lambda_entropy : float
        Weights of the KL, load-balance and gate-entropy terms.
    labels : Tensor (B,) int64, optional
        Category indices; required when out.routing == "supervised".
    lambda_supervised : float
        Weight of the gate's cross-entropy term for routing="supervised".

    Returns
    -------
    dict of scalar tensors
        "total" and the unweighted terms:
        "recon"    squared error summed over pixels and over the batch;
        "kl"       KL(q(z|x) || N(0, I)) summed over latent dimensions and over the batch;
        "balance"  E * sum_e (mean_b gate_probs[b, e] - 1/E)^2;
        "entropy"  mean over the batch of -sum_e p log(p + 1e-8);
        "supervised" (routing="supervised" only) cross-entropy of the gate logits against
                   the labels, summed over the batch like recon and kl.
    """
    if x.shape != out.recon.shape:
        raise ValueError(f"x must have the shape of out.recon {tuple(out.recon.shape)}, got {tuple(x.shape)}")

    recon = (out.recon - x).pow(2).sum()
    kl = -0.5 * (1 + out.logvar - out.mu.pow(2) - out.logvar.exp()).sum()

    probs = out.gate_probs  # (B, E)
    num_experts = probs.shape[1]
    balance = num_experts * (probs.mean(dim=0) - 1.0 / num_experts).pow(2).sum()
    entropy = -(probs * torch.log(probs + ENTROPY_EPS)).sum(dim=1).mean()

    total = recon + beta * kl + lambda_balance * balance + lambda_entropy * entropy
    terms = {"recon": recon, "kl": kl, "balance": balance, "entropy": entropy}

    if out.routing == "supervised":
        if labels is None:
            raise ValueError('routing="supervised" needs labels: call smoe_loss(..., labels=labels)')
        supervised = F.cross_entropy(out.gate_logits, labels.to(out.gate_logits.device), reduction="sum")
        total = total + lambda_supervised * supervised
        terms["supervised"] = supervised

    return {"total": total, **terms}
