"""The multiformer: shapes, positional encoding (non-square token grids), gradients, invariances, overfitting, activation
checkpointing, compilation and plug-and-play loading (attention itself: ``test_attention.py``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from torch._dynamo.utils import counters

from atmorep_coupler.model.checkpoint import WEIGHTS_FORMAT, save_state
from atmorep_coupler.config import from_dict
from atmorep_coupler.data.tokens import token_metadata
from atmorep_coupler.errors import CheckpointError, ConfigError
from atmorep_coupler.model.config import ModelConfig
from atmorep_coupler.model.losses import total_loss
from atmorep_coupler.model.masking import Masker
from atmorep_coupler.model.multiformer import (Multiformer, activation_bytes, checkpointing_needed, compile_model,
                                                load_fields, load_weights, positional_encoding)

from .conftest import tiny_config_dict


def make_batch(config: ModelConfig, batch: int = 3, seed: int = 0, key=(0, 0, 0)):
    g = torch.Generator().manual_seed(seed)
    nt, ny, nx = config.neighbourhood
    tokens = {f.name: torch.randn(batch, f.num_levels, *f.num_tokens, *f.token_size, generator=g) for f in config.fields}
    times = np.datetime64("2000-03-01T00", "ns") + np.arange(nt)[None].repeat(batch, 0) * np.timedelta64(3, "h")
    lat = np.linspace(50, 10, ny)[None].repeat(batch, 0)
    lon = (np.arange(nx) * 5.625 + 330.0)[None].repeat(batch, 0) % 360
    meta = {f.name: torch.from_numpy(token_metadata(times, lat, lon, f.levels, f.token_size)) for f in config.fields}
    return Masker(config)(tokens, seed, key), meta


def loss_of(config, outputs, masked):
    return total_loss(outputs, {k: masked[k].targets for k in outputs}, {"mse_ensemble": 1.0, "stats": 1.0},
                      {f.name: f.loss_weight for f in config.predicted_fields})[0]


def test_output_shapes_and_size(tiny_config):
    torch.manual_seed(0)
    model = Multiformer(tiny_config)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    masked, meta = make_batch(tiny_config)
    out = model(masked, meta)
    assert set(out) == {"temperature", "u_component_of_wind"}
    for name, o in out.items():
        n = int(masked[name].target.sum())
        assert o.members.shape == (n, 4, 1, 4, 4)
        assert o.mean.shape == o.std.shape == (n, 1, 4, 4)
        torch.testing.assert_close(o.mean, o.members.mean(1))
        assert (o.std > 0).all()


def test_positional_encoding_is_separable_on_non_square_grids_d3():
    L, T, Y, X, E = 2, 3, 2, 5, 32
    pe = positional_encoding(L, T, Y, X, E)
    assert pe.shape == (L, T, Y, X, E)
    q = E // 4  # channels per axis: level, time, lat row, lon column
    for axis in range(4):
        part = pe[..., axis * q:(axis + 1) * q].movedim(axis, 0)  # [n_axis, other three axes..., q]
        flat = part.reshape(part.shape[0], -1, q)
        assert torch.equal(flat, flat[:, :1].expand_as(flat))  # depends on its own axis index only
    # direct formula for token (level 1, time 2, row 1, column 4) and every flat index ordering
    freqs = 100.0 ** (-np.arange(E // 8) / (E // 8))
    idx = (1, 2, 1, 4)
    expected = np.concatenate([f(i * freqs) for i in idx for f in (np.sin, np.cos)])
    np.testing.assert_allclose(pe[idx].numpy(), expected, atol=1e-6)
    flat = pe.flatten(0, 3)
    s = ((1 * T + 2) * Y + 1) * X + 4  # row-major flat token index used by the model
    torch.testing.assert_close(flat[s], pe[idx])
    assert torch.unique(flat, dim=0).shape[0] == L * T * Y * X  # every position distinct


def test_gradient_reaches_every_parameter(tiny_config):
    torch.manual_seed(1)
    model = Multiformer(tiny_config)
    masked, meta = make_batch(tiny_config, batch=4)
    assert all(m.hidden.any() for name, m in masked.items() if tiny_config.field(name).predicted)
    loss_of(tiny_config, model(masked, meta), masked).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert missing == []


def test_hidden_token_content_is_ignored(tiny_config):
    """The learned mask embedding replaces hidden tokens: their input values cannot leak."""
    torch.manual_seed(2)
    model = Multiformer(tiny_config).eval()
    masked, meta = make_batch(tiny_config)
    spoiled = copy.deepcopy(masked)
    for m in spoiled.values():
        m.inputs[m.hidden] = 123.0
    a, b = model(masked, meta), model(spoiled, meta)
    for name in a:
        torch.testing.assert_close(a[name].members, b[name].members, rtol=0, atol=0)


def test_result_does_not_depend_on_field_order(tiny_config):
    torch.manual_seed(3)
    model = Multiformer(tiny_config).eval()
    d = tiny_config_dict()
    d["fields"] = d["fields"][::-1]
    reordered = Multiformer(from_dict(ModelConfig, d)).eval()
    reordered.load_state_dict(model.state_dict())
    masked, meta = make_batch(tiny_config)
    a, b = model(masked, meta), reordered(masked, meta)
    for name in a:
        torch.testing.assert_close(a[name].members, b[name].members)


def test_activation_checkpointing_gives_identical_gradients():
    """Recomputing each layer (dropout masks replayed from the saved RNG state) changes nothing, bit for bit."""
    d = tiny_config_dict(dropout=0.1)
    plain = Multiformer(from_dict(ModelConfig, dict(d, activation_checkpointing=False)))
    ckpt = Multiformer(from_dict(ModelConfig, dict(d, activation_checkpointing=True)))
    assert not plain.activation_checkpointing and ckpt.activation_checkpointing
    ckpt.load_state_dict(plain.state_dict())
    masked, meta = make_batch(plain.config)
    losses = []
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(11)  # the same dropout masks
        loss = loss_of(model.config, model(masked, meta), masked)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == losses[1]
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert torch.equal(a.grad, b.grad), name
    with torch.profiler.profile() as prof:  # and it really recomputed: twice the attention calls
        loss_of(ckpt.config, ckpt(masked, meta), masked).backward()
    calls = {e.key: e.count for e in prof.key_averages()}
    assert calls["aten::scaled_dot_product_attention"] == 2 * sum(
        len(layer.heads) for f in ckpt.fields.values() for layer in [*f.encoder, *getattr(f, "decoder", [])])


@pytest.mark.slow  # tracing takes 15-40 s on the shared 2-core machine
def test_compiled_model_is_one_graph_for_every_target_count_and_equals_eager():
    """The whole forward (embedding to tail, the data-dependent gather of targets included) is one graph;
    batches with other target counts reuse it; outputs and gradients equal the eager model's. Traced with
    the ``aot_eager`` backend (dynamo + AOTAutograd without code generation: inductor's C++ compilation
    takes minutes on 2 cores; the benchmark times it)."""
    tiny_config = from_dict(ModelConfig, tiny_config_dict(encoder_layers=1, decoder_layers=1))
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(8)
    model = Multiformer(tiny_config).train()
    compiled = compile_model(model, backend="aot_eager")
    counts = []
    for seed in range(3):  # BERT masking: another number of targets in every batch
        masked, meta = make_batch(tiny_config, seed=seed, key=(0, 0, seed))
        counts.append(int(masked["temperature"].target.sum()))
        grads = []
        for m in (model, compiled):
            model.zero_grad()
            out = m(masked, meta)
            loss_of(tiny_config, out, masked).backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
            if m is model:
                eager = out
        for name in out:
            torch.testing.assert_close(out[name].members, eager[name].members, rtol=1e-5, atol=1e-6)
        for name, g in grads[0].items():
            torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert len(set(counts)) == 3
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"] and not counters["recompiles"]


def test_checkpointing_rule_follows_memory(monkeypatch):
    """``auto``: checkpoint when the estimated activations exceed half the memory left after weights,
    gradients and AdamW state; an explicit setting is kept whatever the memory."""
    from atmorep_coupler.model import multiformer

    model = Multiformer(from_dict(ModelConfig, tiny_config_dict(activation_checkpointing="auto")))
    states = 16 * sum(p.numel() for p in model.parameters())
    activations = activation_bytes(model.config, batch_size=8)
    for free, expected in [(states + 2.1 * activations, False), (states + 1.9 * activations, True)]:
        monkeypatch.setattr(multiformer, "_available_memory", lambda device, free=free: int(free))
        assert checkpointing_needed(model, 8, "cpu") is expected
    assert not model.activation_checkpointing  # ``auto`` is off until resolved for a device and batch
    for setting in (True, False):
        fixed = Multiformer(from_dict(ModelConfig, tiny_config_dict(activation_checkpointing=setting)))
        assert checkpointing_needed(fixed, 10**6, "cpu") is setting


def test_activation_estimate_matches_the_saved_tensors(tiny_config):
    """The estimate behind the rule, against the bytes autograd really keeps (saved-tensor hooks)."""
    grouped = tiny_config_dict(position_bias_groups=[1, 3], coupling_position_bias=True)  # 2 + 24 extra channels
    for config in (tiny_config, from_dict(ModelConfig, tiny_config_dict(relative_position_bias=False)),
                   from_dict(ModelConfig, grouped)):
        model = Multiformer(config).train()
        masked, meta = make_batch(config, batch=4)
        params = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        saved = {}

        def keep(t):
            if t.untyped_storage().data_ptr() not in params:
                saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            model(masked, meta)
        measured = sum(saved.values())
        assert 0.8 < activation_bytes(config, 4) / measured < 1.2, (activation_bytes(config, 4), measured)


def test_overfits_one_batch(tiny_config):
    torch.manual_seed(5)
    model = Multiformer(tiny_config)
    masked, meta = make_batch(tiny_config, batch=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        out = model(masked, meta)
        loss = total_loss(out, {k: masked[k].targets for k in out}, {"mse_ensemble": 1.0},
                          {"temperature": 1.0, "u_component_of_wind": 1.0})[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], losses[::20]


def test_config_errors_name_the_key():
    d = tiny_config_dict()
    d["fields"][1]["token_sise"] = [1, 4, 4]
    with pytest.raises(ConfigError, match=r"fields\[1\]\.token_sise: unknown key"):
        from_dict(ModelConfig, d)
    d = tiny_config_dict()
    d["fields"][1]["num_tokens"] = [3, 2, 3]
    with pytest.raises(ConfigError, match=r"fields\[1\] \(u_component_of_wind\).*same space-time neighbourhood"):
        from_dict(ModelConfig, d)
    d = tiny_config_dict()
    d["fields"][0]["coupled_fields"] = ["vorticity"]
    with pytest.raises(ConfigError, match="'vorticity' is not a field"):
        from_dict(ModelConfig, d)
    d = tiny_config_dict()
    d["fields"][1]["coupled_fields"] = ["temperature"]  # co2 no longer used by anyone
    with pytest.raises(ConfigError, match="co2_equivalent.*no effect"):
        from_dict(ModelConfig, d)
    with pytest.raises(ConfigError, match="coarsen_factors \\[3\\] do not divide"):
        from_dict(ModelConfig, tiny_config_dict(coarsen_factors=[3]))
    with pytest.raises(ConfigError, match="forecast_slices: 3 must be <"):
        from_dict(ModelConfig, tiny_config_dict(strategies=[{"kind": "forecast", "forecast_slices": 3}]))
    with pytest.raises(ConfigError, match="decoder_layers: 3 > encoder_layers 2"):
        from_dict(ModelConfig, tiny_config_dict(decoder_layers=3))
    with pytest.raises(ConfigError, match=r"position_bias_groups: \[1, 2\] must be group sizes"):
        from_dict(ModelConfig, tiny_config_dict(position_bias_groups=[1, 2]))


# ------------------------------------------------------------------------------ plug and play
def single_field_config(name: str, **extra) -> ModelConfig:
    d = tiny_config_dict()
    field = next(f for f in d["fields"] if f["name"] == name)
    d["fields"] = [dict(field, coupled_fields=[]), *extra.get("more", [])]
    return from_dict(ModelConfig, d)


def test_multiformer_from_single_field_checkpoints_reproduces_each_field(tmp_path, tiny_config):
    torch.manual_seed(6)
    singles = {name: Multiformer(single_field_config(name)).eval() for name in ("temperature", "u_component_of_wind")}
    paths = {}
    for name, model in singles.items():
        paths[name] = tmp_path / f"{name}.pt"
        save_state({"model": model.state_dict()}, paths[name], format=WEIGHTS_FORMAT)
    multi = Multiformer(tiny_config).eval()
    for name, path in paths.items():
        loaded = load_fields(multi, path, [name])
        assert loaded and all(k.startswith(f"fields.{name}.") for k in loaded)
    masked, meta = make_batch(tiny_config)
    out = multi(masked, meta)
    for name, model in singles.items():
        sub = {name: masked[name]}
        ref = model(sub, {name: meta[name]})[name]
        # new coupling heads start with a zero output projection: the field computes what it did alone
        torch.testing.assert_close(out[name].members, ref.members, rtol=1e-5, atol=1e-6)


def test_add_a_field_while_existing_fields_stay_frozen(tiny_config):
    torch.manual_seed(7)
    trained = Multiformer(single_field_config("temperature"))
    model = Multiformer(tiny_config)
    loaded = load_fields(model, trained.state_dict(), ["temperature"], freeze=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())
    assert all(not params[k].requires_grad for k in loaded)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        masked, meta = make_batch(tiny_config, key=(0, 0, step))
        opt.zero_grad()
        loss_of(tiny_config, model(masked, meta), masked).backward()
        opt.step()
    after = model.state_dict()
    for k in loaded:
        assert torch.equal(before[k], after[k]), k  # frozen
    new_coupling = "fields.temperature.encoder.0.heads.u_component_of_wind.out.weight"
    assert new_coupling not in loaded and not torch.equal(before[new_coupling], after[new_coupling])
    assert not torch.equal(before["fields.u_component_of_wind.tail.weight"], after["fields.u_component_of_wind.tail.weight"])


def test_load_fields_rejects_mismatched_checkpoints(tiny_config):
    model = Multiformer(tiny_config)
    wider = tiny_config_dict()
    wider["fields"][0]["embed_dim"] = 48
    other = Multiformer(from_dict(ModelConfig, wider))
    with pytest.raises(CheckpointError, match="checkpoint shape"):
        load_fields(model, other.state_dict(), ["temperature"])
    with pytest.raises(CheckpointError, match="'vorticity': not in both"):
        load_fields(model, other.state_dict(), ["vorticity"])
    deeper = Multiformer(from_dict(ModelConfig, tiny_config_dict(encoder_layers=3)))
    with pytest.raises(CheckpointError, match="no place in the model"):
        load_fields(model, deeper.state_dict(), ["temperature"])


def test_coupling_position_bias_on_same_grid_couplings_only():
    """``coupling_position_bias``: coupling heads between fields on one token grid (temperature and
    u here) start local -- the same place, time and level is the most attended -- others stay unbiased."""
    for flag in (False, True):
        model = Multiformer(from_dict(ModelConfig, tiny_config_dict(coupling_position_bias=flag)))
        layer = model.fields["temperature"].encoder[0]
        assert (layer.heads["u_component_of_wind"].bias is not None) == flag
        assert layer.heads["sea_surface_temperature"].bias is None  # another token grid
    bias = layer.heads["u_component_of_wind"].bias.matrix()  # [1 head, S, S]
    S = 2 * 3 * 2 * 4
    assert bias.shape == (1, S, S)
    assert torch.all(bias[0].diagonal() == 0) and torch.all(bias[0][~torch.eye(S, dtype=torch.bool)] < 0)
    masked, meta = make_batch(model.config)
    assert set(model(masked, meta)) == {"temperature", "u_component_of_wind"}


def test_weights_of_the_layout_before_fused_attention_are_refused_with_the_reason(tiny_config):
    model = Multiformer(tiny_config)
    state = model.state_dict()
    old = {}
    for key, value in state.items():  # the earlier layout: self heads projected q and kv separately
        if key.endswith(".qkv.weight"):
            q, kv = value.split([value.shape[0] // 3, 2 * value.shape[0] // 3])
            old[key.replace(".qkv.", ".q.")], old[key.replace(".qkv.", ".kv.")] = q, kv
        else:
            old[key] = value
    with pytest.raises(CheckpointError, match=r"old\.pt: the weights do not fit .*earlier version of the model.*retrain"):
        load_weights(Multiformer(tiny_config), old, "old.pt")
    other = Multiformer(from_dict(ModelConfig, tiny_config_dict(encoder_layers=3)))
    with pytest.raises(CheckpointError, match=r"other\.pt: the weights do not fit the checkpoint's own model config: "):
        load_weights(model, other.state_dict(), "other.pt")  # another mismatch: no such hint
