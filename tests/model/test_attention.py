"""Attention with the relative position bias: the fused path (bias factors as extra head channels on
``scaled_dot_product_attention``) against the explicit softmax, values and gradients (the bias's
included); the bias against its definition; the fused kernel really runs; attention maps by hooks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from torch.profiler import ProfilerActivity, profile

from atmorep_coupler.model.multiformer import Multiformer, RelativePositionBias, attend, attention_weights

from .test_multiformer import make_batch

GRID = (2, 3, 2, 4)  # levels, T, Y, X: non-square, every axis > 1
S = int(np.prod(GRID))
SEPARATE = ((2,), (3,), (2,), (4,))  # every axis its own offset table: 11 extra channels
JOINT = ((2,), (3, 2, 4))  # level alone, time-row-column offsets jointly: 2 + 24 extra channels


def random_bias(heads: int, dtype=torch.float64, grouped=SEPARATE) -> RelativePositionBias:
    bias = RelativePositionBias(grouped, heads).to(dtype)
    with torch.no_grad():
        bias.table.normal_()  # arbitrary learned values, not the (symmetric) prior
    return bias


@pytest.mark.parametrize("head_dim,grouped", [(8, SEPARATE), (6, SEPARATE), (8, JOINT)])  # padded to 24, 24, 40
def test_fused_attention_equals_explicit_softmax_with_gradients(head_dim, grouped):
    torch.manual_seed(0)
    heads, B = 3, 2
    bias = random_bias(heads, grouped=grouped)
    q, k, v = (torch.randn(B, heads, S, head_dim, dtype=torch.float64, requires_grad=True) for _ in range(3))
    fused = attend(q, k, v, bias)
    explicit = attention_weights(q, k, bias) @ v
    torch.testing.assert_close(fused, explicit, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(fused)
    grads_fused = torch.autograd.grad(fused, (q, k, v, bias.table), upstream)
    grads_explicit = torch.autograd.grad(explicit, (q, k, v, bias.table), upstream)
    for name, a, b in zip("qkv", grads_fused, grads_explicit):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11, msg=name)
    torch.testing.assert_close(grads_fused[3], grads_explicit[3], rtol=1e-11, atol=1e-11, msg="bias table")
    assert grads_fused[3].abs().min() > 0  # every offset of every axis is reached
    # no bias: plain SDPA against the plain softmax
    torch.testing.assert_close(attend(q, k, v, None), attention_weights(q, k, None) @ v, rtol=1e-12, atol=1e-12)


def test_fused_attention_in_float32_matches_to_round_off():
    torch.manual_seed(1)
    bias = random_bias(4, torch.float32)
    q, k, v = (torch.randn(2, 4, S, 16) for _ in range(3))
    torch.testing.assert_close(attend(q, k, v, bias), attention_weights(q, k, bias) @ v, rtol=2e-6, atol=2e-6)


def _kernels(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def test_biased_attention_runs_the_fused_kernel_in_training_and_inference():
    torch.manual_seed(2)
    bias = random_bias(4, torch.float32)
    q, k, v = (torch.randn(1, 4, S, 16, requires_grad=True) for _ in range(3))
    fused = "aten::_scaled_dot_product_flash_attention_for_cpu"
    train = _kernels(lambda: attend(q, k, v, bias).sum().backward())
    assert fused in train and "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in train
    assert "aten::_softmax" not in train
    with torch.no_grad():
        assert fused in _kernels(lambda: attend(q, k, v, bias))
    # the check can fail: a dense [H, S, S] bias with a gradient takes the unfused kernel
    dense = bias.matrix()
    unfused = _kernels(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense).sum().backward())
    assert fused not in unfused


@pytest.mark.parametrize("grouped", [SEPARATE, JOINT, ((2, 3, 2, 4),)])
def test_relative_position_bias_is_a_sum_over_groups_of_offset_tables(grouped):
    heads = 3
    bias = random_bias(heads, torch.float32, grouped)
    matrix = bias.matrix()
    assert matrix.shape == (heads, S, S)
    coords = np.array(np.unravel_index(np.arange(S), GRID)).T  # row-major token order of the model
    table = bias.table.detach().numpy()
    axes = np.cumsum([0] + [len(g) for g in grouped])
    # per group: its non-zero offsets in row-major order (the zero offset is pinned at 0)
    learned = [[o for o in itertools.product(*(range(-(n - 1), n) for n in g)) if any(o)] for g in grouped]
    assert table.shape == (heads, sum(len(o) for o in learned))
    starts = np.cumsum([0] + [len(o) for o in learned])
    for q in range(0, S, 5):
        for k in range(0, S, 3):
            offset = coords[q] - coords[k]
            expected = np.zeros(heads)
            for g, (lo, hi) in enumerate(zip(axes[:-1], axes[1:])):
                if offset[lo:hi].any():
                    expected += table[:, starts[g] + learned[g].index(tuple(offset[lo:hi]))]
            np.testing.assert_allclose(matrix[:, q, k].detach().numpy(), expected, rtol=1e-6, atol=1e-6)
    u, e = bias.factors()
    torch.testing.assert_close(u @ e.T, matrix)  # the factorisation the fused path uses
    assert e.shape == (S, sum(int(np.prod(g)) for g in grouped))


@pytest.mark.parametrize("grouped", [SEPARATE, JOINT])
def test_locality_prior_is_the_l1_distance_times_the_head_slope(grouped):
    prior = RelativePositionBias(grouped, heads=3).matrix()
    coords = np.array(np.unravel_index(np.arange(S), GRID)).T
    for q, k in [(0, 0), (0, 1), (5, 17), (47, 0), (30, 31)]:
        distance = np.abs(coords[q] - coords[k]).sum()
        torch.testing.assert_close(prior[:, q, k], -distance * torch.tensor([1.0, 0.5, 0.25]))


def test_attention_maps_by_hooks_are_the_weights_of_the_fused_forward(tiny_config):
    torch.manual_seed(4)
    model = Multiformer(tiny_config).eval()
    masked, meta = make_batch(tiny_config)
    maps = model.attention_maps(masked, meta)
    assert maps["fields.temperature.encoder.0.heads.u_component_of_wind"].shape == (3, 1, 48, 48)
    assert maps["fields.temperature.encoder.1.heads.sea_surface_temperature"].shape == (3, 1, 48, 2)
    assert maps["fields.temperature.encoder.0.heads.temperature"].shape == (3, 4, 48, 48)
    assert "fields.u_component_of_wind.decoder.1.heads.encoder" in maps
    for w in maps.values():
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed afterwards
    # the maps are the weights the forward used: weights @ values through the output projection
    heads = model.fields["temperature"].encoder[0].heads["temperature"]
    captured = {}
    handle = heads.register_forward_hook(lambda m, args, out: captured.update(args=args, out=out))
    with torch.no_grad():
        model(masked, meta)
    handle.remove()
    _, _, v = heads.project(*captured["args"])
    w = maps["fields.temperature.encoder.0.heads.temperature"]
    explicit = heads.out((w @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(explicit, captured["out"], rtol=1e-5, atol=1e-6)
