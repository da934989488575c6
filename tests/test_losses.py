"""smoe_loss against the formulas written out by hand on arbitrary tensors."""

import math

import pytest
import torch

from smoe.losses import smoe_loss
from smoe.model import SMoEOutput, SMoEVAE

B, L, E = 7, 5, 4


def random_output(routing="learned", seed=0, zero_probs=False):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, E, generator=generator, dtype=torch.float64) * 3
    probs = torch.softmax(logits, dim=1)
    if zero_probs:
        probs[:, 0] = 0.0
        probs = probs / probs.sum(dim=1, keepdim=True)
    mu = torch.randn(B, L, generator=generator, dtype=torch.float64)
    return SMoEOutput(
        recon=torch.rand(B, 1, 28, 28, generator=generator, dtype=torch.float64),
        mu=mu,
        logvar=torch.randn(B, L, generator=generator, dtype=torch.float64),
        z=mu,
        gate_logits=logits,
        gate_probs=probs,
        expert=probs.argmax(dim=1),
        routing=routing,
    )


def random_images(seed=1):
    return torch.rand(B, 1, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def by_hand(x, out):
    """Every term written as explicit sums over samples, pixels, latent dimensions and experts."""
    recon = sum(
        (out.recon[b, 0, i, j].item() - x[b, 0, i, j].item()) ** 2 for b in range(B) for i in range(28) for j in range(28)
    )
    kl = 0.0
    for b in range(B):
        for d in range(L):
            m, lv = out.mu[b, d].item(), out.logvar[b, d].item()
            kl += -0.5 * (1 + lv - m * m - math.exp(lv))
    p = out.gate_probs.tolist()
    balance = E * sum((sum(p[b][e] for b in range(B)) / B - 1 / E) ** 2 for e in range(E))
    entropy = sum(-sum(p[b][e] * math.log(p[b][e] + 1e-8) for e in range(E)) for b in range(B)) / B
    return {"recon": recon, "kl": kl, "balance": balance, "entropy": entropy}


@pytest.mark.parametrize("seed", [0, 1])
def test_terms_match_formulas(seed):
    x, out = random_images(seed + 10), random_output(seed=seed)
    losses = smoe_loss(x, out, beta=0.1, lambda_balance=200, lambda_entropy=400)
    expected = by_hand(x, out)
    for term in ("recon", "kl", "balance", "entropy"):
        assert losses[term].item() == pytest.approx(expected[term], rel=1e-9), term


def test_total_weights_terms():
    x, out = random_images(), random_output()
    beta, lambda_balance, lambda_entropy = 0.37, 123.0, 4.5
    losses = smoe_loss(x, out, beta=beta, lambda_balance=lambda_balance, lambda_entropy=lambda_entropy)
    expected = by_hand(x, out)
    total = expected["recon"] + beta * expected["kl"] + lambda_balance * expected["balance"] + lambda_entropy * expected["entropy"]
    assert losses["total"].item() == pytest.approx(total, rel=1e-9)


def test_keys_without_supervision():
    losses = smoe_loss(random_images(), random_output(), beta=0.1, lambda_balance=1, lambda_entropy=1)
    assert set(losses) == {"total", "recon", "kl", "balance", "entropy"}


def test_supervised_term_is_summed_cross_entropy():
    x, out = random_images(), random_output(routing="supervised")
    labels = torch.tensor([0, 3, 1, 1, 2, 0, 3])
    losses = smoe_loss(x, out, beta=0.1, lambda_balance=2, lambda_entropy=3, labels=labels, lambda_supervised=0.5)

    log_probs = torch.log_softmax(out.gate_logits, dim=1)
    cross_entropy = -sum(log_probs[b, labels[b]].item() for b in range(B))
    assert losses["supervised"].item() == pytest.approx(cross_entropy, rel=1e-9)

    expected = by_hand(x, out)
    total = expected["recon"] + 0.1 * expected["kl"] + 2 * expected["balance"] + 3 * expected["entropy"] + 0.5 * cross_entropy
    assert losses["total"].item() == pytest.approx(total, rel=1e-9)


def test_supervised_requires_labels():
    with pytest.raises(ValueError, match="needs labels"):
        smoe_loss(random_images(), random_output(routing="supervised"), beta=0.1, lambda_balance=1, lambda_entropy=1)


def test_balance_extremes():
    out = random_output()
    out.gate_probs = torch.full((B, E), 1 / E, dtype=torch.float64)
    uniform = smoe_loss(random_images(), out, beta=0, lambda_balance=1, lambda_entropy=1)
    assert uniform["balance"].item() == pytest.approx(0.0, abs=1e-12)
    assert uniform["entropy"].item() == pytest.approx(math.log(E), rel=1e-6)

    out.gate_probs = torch.zeros(B, E, dtype=torch.float64)
    out.gate_probs[:, 2] = 1.0
    collapsed = smoe_loss(random_images(), out, beta=0, lambda_balance=1, lambda_entropy=1)
    assert collapsed["balance"].item() == pytest.approx(E - 1, rel=1e-12)
    assert collapsed["entropy"].item() == pytest.approx(0.0, abs=1e-6)


def test_entropy_finite_with_zero_probs():
    x, out = random_images(), random_output(zero_probs=True)
    losses = smoe_loss(x, out, beta=0.1, lambda_balance=1, lambda_entropy=1)
    assert losses["entropy"].item() == pytest.approx(by_hand(x, out)["entropy"], rel=1e-9)


def test_gradients_reach_all_parts():
    torch.manual_seed(0)
    model = SMoEVAE(3).train()
    x = torch.rand(4, 1, 28, 28)
    smoe_loss(x, model(x), beta=0.1, lambda_balance=200, lambda_entropy=400)["total"].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"shape of out.recon"):
        smoe_loss(torch.rand(3, 1, 28, 28), random_output(), beta=0.1, lambda_balance=1, lambda_entropy=1)
