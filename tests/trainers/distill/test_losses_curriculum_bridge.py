"""Losses on hand-computed values, the curriculum's ordering and pacing, the student's shapes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers.distill import bridge as bridges
from trainers.distill import curriculum, losses, temperature
from trainers.tasks.scores import normalized_entropy


def test_kd_kl_matches_hand_computation_with_t_squared():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    T = 2.0
    # softmax([0.5, 0]) and softmax([0, 0.5]) by hand
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = [ps[1], ps[0]]
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    assert losses.kd_kl(s, t, T).item() == pytest.approx(kl * T * T, rel=1e-5)
    assert losses.kd_kl(s, t, 1.0).item() == pytest.approx(
        sum(p * math.log(p / q) for p, q in zip([1 / (1 + math.e), math.e / (1 + math.e)], [math.e / (1 + math.e), 1 / (1 + math.e)])), rel=1e-5)
    assert losses.kd_kl(t, t, T).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_kl_per_sample_temperature_is_mean_of_rows():
    s = torch.tensor([[1.0, 0.0], [0.3, 0.9]])
    t = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    per = torch.stack([losses.kd_kl(s[i:i + 1], t[i:i + 1], T) for i, T in enumerate([1.5, 3.0])])
    assert losses.kd_kl(s, t, torch.tensor([1.5, 3.0])).item() == pytest.approx(per.mean().item(), rel=1e-6)


def test_ce_ignores_negative_targets():
    logits = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert losses.ce(logits, torch.tensor([0, -1])).item() == pytest.approx(expected, rel=1e-6)


def test_adaptive_temperature_rule():
    T = temperature.adaptive_temperature(torch.tensor([[0.0, 0.0], [100.0, 0.0]]), 1.0, 4.0)
    assert T[0].item() == pytest.approx(1.0, abs=1e-5)  # uniform teacher -> t_min
    assert T[1].item() == pytest.approx(4.0, abs=1e-4)  # one-hot teacher -> t_max


def test_bridge_loss_decreases_when_trained_and_ignores_unaligned_nodes():
    torch.manual_seed(0)
    bridge = bridges.AttentionBridge(hidden=16, state_dim=4)
    h = torch.randn(10, 16)
    batch = torch.tensor([0] * 6 + [1] * 4)
    target = torch.randn(10, 4)
    mask = torch.ones(10, dtype=torch.bool)
    mask[3] = False
    opt = torch.optim.Adam(bridge.parameters(), lr=0.05)
    first = bridge(h, batch, target, mask).item()
    for _ in range(60):
        opt.zero_grad(); loss = bridge(h, batch, target, mask); loss.backward(); opt.step()
    assert loss.item() < first * 0.5
    changed = target.clone(); changed[3] = 100.0  # an unaligned node's state must not matter
    # the direct-projection term ignores node 3; the attended view of other nodes does not read node 3's target
    assert bridge(h, batch, changed, mask).item() == pytest.approx(bridge(h, batch, target, mask).item())
    m2 = mask.clone(); m2[:] = False
    assert bridge(h, batch, target, m2).item() == 0.0


def test_curriculum_orders_easy_to_hard_and_paces():
    rng = np.random.default_rng(0)
    nodes = np.array([5, 50, 10, 500, 20])
    confident = np.array([[9.0, 0.0]] * 5)
    d = curriculum.difficulty(nodes, normalized_entropy(torch.tensor(confident)).numpy())
    assert list(np.argsort(d)) == [0, 2, 4, 1, 3]  # same teacher confidence: size decides
    unsure = confident.copy(); unsure[0] = [0.1, 0.0]  # smallest but the teacher is unsure
    du = curriculum.difficulty(nodes, normalized_entropy(torch.tensor(unsure)).numpy())
    assert np.argmin(du) != 0 and du[0] > d[0]  # no longer the easiest
    assert curriculum.competence(0, 0.3, 4) == pytest.approx(0.3)
    assert curriculum.competence(4, 0.3, 4) == 1.0
    first = curriculum.select(d, 0, True, 0.4, 4, rng)
    assert sorted(first.tolist()) == [0, 2]  # ceil(0.4 * 5) easiest
    assert sorted(curriculum.select(d, 4, True, 0.4, 4, rng).tolist()) == [0, 1, 2, 3, 4]
    assert sorted(curriculum.select(d, 0, False, 0.4, 4, rng).tolist()) == [0, 1, 2, 3, 4]
    assert curriculum.stages(1, 2, 1, True) == ["align", "fusion", "fusion", "adaptive"]
    assert curriculum.stages(0, 2, 0, True) == ["fusion", "fusion"]
    assert curriculum.stages(1, 2, 1, False) == ["ce"] * 4
