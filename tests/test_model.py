"""SMoEVAE: shapes, soft and hard gating, both expert executions, supervised and label routing."""

import pytest
import torch

from smoe.model import ExpertDecoder, SMoEVAE


def batch(size=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(size, 1, 28, 28, generator=generator)


def make_model(num_experts=4, routing="learned", expert_impl="auto", seed=0):
    torch.manual_seed(seed)
    return SMoEVAE(num_experts, routing=routing, expert_impl=expert_impl)


def decode_each(model, z, experts):
    """Reference hard gating: a Python loop over samples."""
    return torch.cat([model.decoder.experts[int(e)](z[i : i + 1]) for i, e in enumerate(experts)])


@pytest.mark.parametrize("num_experts", [1, 4])
def test_output_shapes(num_experts):
    out = make_model(num_experts)(batch())
    assert out.recon.shape == (6, 1, 28, 28)
    assert out.mu.shape == (6, 32)
    assert out.logvar.shape == (6, 32)
    assert out.z.shape == (6, 32)
    assert out.gate_logits.shape == (6, num_experts)
    assert out.gate_probs.shape == (6, num_experts)
    assert out.expert.shape == (6,)
    assert out.expert.dtype == torch.int64


def test_recon_in_unit_interval():
    recon = make_model()(batch()).recon
    assert recon.min() > 0
    assert recon.max() < 1


def test_architecture_sizes():
    model = make_model(num_experts=3)
    assert model.encoder.mu.in_features == 6272
    assert model.encoder.logvar.in_features == 6272
    assert [m.out_features for m in model.gate.net if isinstance(m, torch.nn.Linear)] == [64, 32, 3]
    expert_params = sum(p.numel() for p in ExpertDecoder(32).parameters())
    assert expert_params == (32 * 392 + 392) + (8 * 16 * 9 + 16) + (16 * 9 + 1)
    assert len(model.decoder) == 3


def test_soft_gating_mixes_experts():
    model = make_model().train()
    out = model(batch())
    expected = sum(out.gate_probs[:, e, None, None, None] * model.decoder.experts[e](out.z) for e in range(4))
    torch.testing.assert_close(out.recon, expected)
    assert torch.equal(out.expert, out.gate_probs.argmax(dim=1))


def test_hard_gating_uses_argmax_expert():
    model = make_model().eval()
    with torch.no_grad():
        out = model(batch(32), generator=torch.Generator().manual_seed(1))
        expected = decode_each(model, out.z, out.expert)
    assert torch.equal(out.expert, out.gate_probs.argmax(dim=1))
    torch.testing.assert_close(out.recon, expected)


def test_hard_gating_with_unused_experts():
    model = make_model(num_experts=6).eval()
    z = torch.randn(5, 32)
    experts = torch.tensor([4, 4, 0, 4, 0])
    for impl in ("loop", "grouped"):
        recon = model.decoder.route(z, experts, impl)
        torch.testing.assert_close(recon, decode_each(model, z, experts))


def test_eval_repeats_with_seeded_generator():
    model = make_model().eval()
    x = batch(16)
    first = model(x, generator=torch.Generator().manual_seed(7))
    second = model(x, generator=torch.Generator().manual_seed(7))
    other = model(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first.recon, second.recon)
    assert torch.equal(first.expert, second.expert)
    assert not torch.equal(first.z, other.z)


def test_use_mean_decodes_mu():
    out = make_model().eval()(batch(), use_mean=True)
    assert torch.equal(out.z, out.mu)


@pytest.mark.parametrize("num_experts", [1, 5])
def test_grouped_matches_loop_soft(num_experts):
    model = make_model(num_experts)
    z = torch.randn(9, 32)
    weights = torch.softmax(torch.randn(9, num_experts), dim=1)
    torch.testing.assert_close(model.decoder.mix(z, weights, "grouped"), model.decoder.mix(z, weights, "loop"))


def test_grouped_matches_loop_hard():
    model = make_model(5)
    z = torch.randn(9, 32)
    experts = torch.randint(0, 5, (9,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model.decoder.route(z, experts, "grouped"), model.decoder.route(z, experts, "loop"))


@pytest.mark.parametrize("routing", ["learned", "supervised"])
def test_grouped_matches_loop_gradients(routing):
    x = batch(8)
    grads = {}
    for impl in ("loop", "grouped"):
        model = make_model(3, routing=routing, expert_impl=impl).train()
        out = model(x, generator=torch.Generator().manual_seed(0))
        (out.recon - x).pow(2).sum().backward()
        # An expert that no sample reached has no gradient in the loop and a zero one when grouped.
        grads[impl] = {
            name: torch.zeros_like(p) if p.grad is None else p.grad for name, p in model.named_parameters()
        }
    for name, grad in grads["loop"].items():
        torch.testing.assert_close(grads["grouped"][name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_auto_impl_is_loop_on_cpu():
    assert make_model()._resolve_impl(torch.device("cpu")) == "loop"
    assert make_model()._resolve_impl(torch.device("cuda")) == "grouped"


def test_supervised_routes_by_gate_in_training():
    model = make_model(5, routing="supervised").train()
    out = model(batch(16))
    assert torch.equal(out.expert, out.gate_probs.argmax(dim=1))
    torch.testing.assert_close(out.recon, decode_each(model, out.z, out.expert))


@pytest.mark.parametrize("training", [True, False])
def test_label_routing_uses_labels(training):
    model = make_model(5, routing="label").train(training)
    labels = torch.tensor([4, 0, 0, 2, 1, 4])
    out = model(batch(), labels)
    assert torch.equal(out.expert, labels)
    torch.testing.assert_close(out.recon, decode_each(model, out.z, labels))


def test_label_routing_requires_labels():
    with pytest.raises(ValueError, match="needs labels"):
        make_model(5, routing="label")(batch())


def test_label_routing_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 5\).*got 5"):
        make_model(5, routing="label")(batch(3), torch.tensor([0, 5, 1]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_experts": 0}, "num_experts must be an int >= 1, got 0"),
        ({"num_experts": 2.5}, "num_experts must be an int >= 1, got 2.5"),
        ({"num_experts": 2, "latent_dim": 0}, "latent_dim must be an int >= 1, got 0"),
        ({"num_experts": 2, "routing": "oracle"}, "routing must be one of .*got 'oracle'"),
        ({"num_experts": 2, "expert_impl": "vmap"}, "expert_impl must be one of .*got 'vmap'"),
    ],
)
def test_constructor_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SMoEVAE(**kwargs)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(2, 28, 28), r"shape \(B, 1, 28, 28\), got \(2, 28, 28\)"),
        (torch.rand(2, 1, 32, 32), r"got \(2, 1, 32, 32\)"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "float tensor.*torch.uint8"),
    ],
)
def test_forward_rejects_input(x, match):
    with pytest.raises(ValueError, match=match):
        make_model()(x)
