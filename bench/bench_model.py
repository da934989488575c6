"""Throughput of SMoEVAE against plain reference implementations, printed as ratios.

Two comparisons at E = 1, 10 and 50 experts:
  train  one Adam step (forward with soft gating, smoe_loss, backward, step) on a batch of 128,
         SMoEVAE against a reference that loops over nn.Sequential experts and mixes their outputs;
  eval   hard-gated evaluation of a batch of 512, SMoEVAE (samples grouped by expert) against a
         reference that decodes one sample at a time with its argmax expert.
Both sides start from the same weights, and their timings are interleaved and repeated, so load
from other processes hits both alike. Each ratio is the median over repeats of the reference time
divided by the SMoEVAE time measured next to it. A ratio above 1 means SMoEVAE is faster.
Each expert execution of SMoEVAE ("loop", "grouped") is timed, and "auto" names the one SMoEVAE
picks on this device.

    python bench/bench_model.py                 # CPU, about 1-2 minutes on 2 cores
    python bench/bench_model.py --device cuda   # GPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from smoe.losses import smoe_loss
from smoe.model import SMoEOutput, SMoEVAE

LOSS_WEIGHTS = {"beta": 0.1, "lambda_balance": 200.0, "lambda_entropy": 400.0}


class LoopReference(nn.Module):
    """The straightforward implementation: experts as nn.Sequential, a Python loop over them."""

    def __init__(self, model: SMoEVAE):
        super().__init__()
        self.encoder = copy.deepcopy(model.encoder)
        self.gate = copy.deepcopy(model.gate)
        self.experts = nn.ModuleList()
        for expert in model.decoder.experts:
            expert = copy.deepcopy(expert)
            self.experts.append(
                nn.Sequential(
                    expert.fc,
                    nn.Unflatten(1, (8, 7, 7)),
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    expert.conv1,
                    nn.ELU(),
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    expert.conv2,
                    nn.Sigmoid(),
                )
            )

    def encode(self, x, generator):
        mu, logvar = self.encoder(x)
        noise = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * noise
        return mu, logvar, z, self.gate(z)

    def train_step_loss(self, x, generator):
        mu, logvar, z, logits = self.encode(x, generator)
        probs = torch.softmax(logits, dim=1)
        recon = sum(probs[:, e, None, None, None] * expert(z) for e, expert in enumerate(self.experts))
        out = SMoEOutput(recon, mu, logvar, z, logits, probs, probs.argmax(1), "learned")
        return smoe_loss(x, out, **LOSS_WEIGHTS)["total"]

    @torch.no_grad()
    def evaluate(self, x, generator):
        _, _, z, logits = self.encode(x, generator)
        experts = logits.argmax(1).tolist()
        return torch.cat([self.experts[e](z[i : i + 1]) for i, e in enumerate(experts)])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(num_experts: int, device: torch.device, repeats: int, impls: list[str]) -> dict[str, list[float]]:
    torch.manual_seed(0)
    x = torch.rand(128, 1, 28, 28, device=device)
    base = SMoEVAE(num_experts)
    contenders = {}
    for impl in impls:
        model = copy.deepcopy(base).to(device).train()
        model.expert_impl = impl
        contenders[impl] = (model, torch.optim.Adam(model.parameters(), lr=1e-4))
    reference = LoopReference(base).to(device).train()
    contenders["reference"] = (reference, torch.optim.Adam(reference.parameters(), lr=1e-4))

    def step(name):
        module, optimizer = contenders[name]
        generator = torch.Generator().manual_seed(0)
        if name == "reference":
            loss = module.train_step_loss(x, generator)
        else:
            loss = smoe_loss(x, module(x, generator=generator), **LOSS_WEIGHTS)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)

    return _interleave(contenders, step, repeats)


def bench_eval(num_experts: int, device: torch.device, repeats: int, impls: list[str]) -> dict[str, list[float]]:
    torch.manual_seed(0)
    x = torch.rand(512, 1, 28, 28, device=device)
    base = SMoEVAE(num_experts)
    contenders = {}
    for impl in impls:
        model = copy.deepcopy(base).to(device).eval()
        model.expert_impl = impl
        contenders[impl] = model
    contenders["reference"] = LoopReference(base).to(device).eval()

    @torch.no_grad()
    def step(name):
        generator = torch.Generator().manual_seed(0)
        if name == "reference":
            contenders[name].evaluate(x, generator)
        else:
            contenders[name](x, generator=generator)
        sync(device)

    return _interleave(contenders, step, repeats)


def _interleave(contenders: dict, step, repeats: int) -> dict[str, list[float]]:
    names = list(contenders)
    for name in names:  # warm-up: allocator, kernels, autotuning
        step(name)
    times = {name: [] for name in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(lambda: step(name)))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (default %(default)s)")
    parser.add_argument("--experts", type=int, nargs="+", default=[1, 10, 50], help="expert counts (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per contender (default %(default)s)")
    args = parser.parse_args()
    device = torch.device(args.device)
    impls = ["loop", "grouped"]
    auto = SMoEVAE(1)._resolve_impl(device)

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeats}")
    print("x = median of paired reference time / SMoEVAE time (above 1: SMoEVAE faster); auto = " + auto)
    header = f"{'bench':<6} {'E':>3} {'reference ms':>13}" + "".join(f" {impl + ' ms':>11} {impl + ' x':>9}" for impl in impls)
    print(header + f" {'auto x':>8}")
    for name, bench in (("train", bench_train), ("eval", bench_eval)):
        for num_experts in args.experts:
            times = bench(num_experts, device, args.repeats, impls)
            ratios = {
                impl: statistics.median(r / t for r, t in zip(times["reference"], times[impl])) for impl in impls
            }
            row = f"{name:<6} {num_experts:>3} {statistics.median(times['reference']) * 1e3:>13.1f}"
            for impl in impls:
                row += f" {statistics.median(times[impl]) * 1e3:>11.1f} {ratios[impl]:>9.2f}"
            print(row + f" {ratios[auto]:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
