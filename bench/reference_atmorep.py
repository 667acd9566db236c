"""Harness that runs the original AtmoRep code (clessig/atmorep, MIT) unchanged, for side-by-side timings.

The reference is *not* part of this repository: point ``--reference`` of ``bench/train_step.py`` at a
checkout of https://github.com/clessig/atmorep (checked against commit ``055f858``). This
module imports its model classes as they are and works around, from the outside, what keeps them from
running on a CPU or without their training stack:

- a defect: ``positional_encoding_harmonic`` calls ``x.get_device()``, which is -1 on CPU, and then
  ``torch.arange(device=-1)`` raises. While the reference runs, ``Tensor.get_device`` returns the
  string ``"cpu"`` for CPU tensors (:func:`cpu_get_device`); nothing else changes.
- ``wandb`` and ``torchinfo`` are imported at module level by the reference's utilities and trainer
  but never used by the model, the loss or the optimiser step; if they are not installed, empty
  modules stand in for them.
- the encoder-to-decoder and decoder-to-tail hooks and the loss live on the reference's
  trainer, which also wants a data store, a run id and folders; they are bound here, unchanged, to a
  small object holding exactly the attributes they read (:class:`ReferenceRun`).

The configuration is the reference's single-field ``core/train.py`` one, with the sizes of this
project's ``ModelConfig`` (fields, layers, heads, width, tail members, dropout, qk-norm, activation
checkpointing), so both sides build the same model.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

from dataclasses import dataclass
from pathlib import Path

import torch

from atmorep_coupler.model.config import ModelConfig

__all__ = ["ReferenceRun", "cpu_get_device", "load_reference"]


@contextlib.contextmanager
def cpu_get_device():
    """``Tensor.get_device()`` returns ``"cpu"`` for CPU tensors inside the block (works around that defect)."""
    original = torch.Tensor.get_device

    def get_device(self):
        return "cpu" if self.device.type == "cpu" else original(self)

    torch.Tensor.get_device = get_device
    try:
        yield
    finally:
        torch.Tensor.get_device = original


def _import_reference(checkout: Path):
    package = checkout / "atmorep"
    if not (package / "core" / "atmorep_model.py").is_file():
        raise FileNotFoundError(f"{checkout}: not a checkout of clessig/atmorep (no atmorep/core/atmorep_model.py)")
    for name in ("wandb", "torchinfo"):  # imported at module level, unused by model, loss and step
        if importlib.util.find_spec(name) is None:
            sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, str(checkout))
    from atmorep.core import trainer  # noqa: PLC0415 -- only importable once the checkout is on the path
    from atmorep.core.atmorep_model import AtmoRep
    from atmorep.utils.utils import Config

    return AtmoRep, Config, trainer.Trainer_BERT  # the BERT trainer owns the hooks; its base, the loss


def reference_config(Config, model: ModelConfig, checkpointing: bool):
    """The reference's ``core/train.py`` configuration with the sizes of ``model`` (one predicted field)."""
    if len(model.fields) != 1 or not model.fields[0].predicted:
        raise ValueError("the reference harness runs single-field configurations (reference_u_2024)")
    f = model.fields[0]
    rates = [f.masking.total, f.masking.mask, f.masking.noise, f.masking.coarsen]
    cf = Config()
    cf.fields = [[f.name, [1, f.embed_dim, [], 0], list(f.levels) or [0], list(f.num_tokens), list(f.token_size), rates]]
    cf.fields_prediction = [[f.name, 1.0]]
    cf.fields_targets = []
    cf.size_token_info, cf.size_token_info_net = 8, 16
    cf.grad_checkpointing = checkpointing
    cf.with_cls = False
    cf.with_mixed_precision = False
    cf.with_layernorm = True
    cf.coupling_num_heads_per_field = model.coupling_heads
    cf.dropout_rate = model.dropout
    cf.with_qk_lnorm = model.qk_norm
    cf.encoder_num_layers, cf.encoder_num_heads, cf.encoder_num_mlp_layers = model.encoder_layers, model.heads, 2
    cf.encoder_att_type = "dense"
    cf.decoder_num_layers, cf.decoder_num_heads, cf.decoder_num_mlp_layers = model.decoder_layers, model.heads, 2
    cf.decoder_self_att = False
    cf.decoder_cross_att_ratio, cf.decoder_cross_att_rate = 0.5, 1.0
    cf.decoder_att_type = "dense"
    cf.net_tail_num_nets, cf.net_tail_num_layers = model.ensemble_size, model.tail_hidden_layers
    cf.losses = ["mse_ensemble", "stats"]
    cf.attention = False
    cf.BERT_strategy = "BERT"
    return cf


@dataclass
class ReferenceRun:
    """The reference model plus the attributes its trainer's hooks and loss read (``cf``, ``devices``,
    ``fields_prediction_idx``, ``tokens_masked_idx``, ``targets``, ``loss_weights``, ...)."""

    net: torch.nn.Module
    cf: object
    trainer_class: type
    devices: list
    fields_prediction_idx: list
    loss_weights: torch.Tensor
    device_out: str
    tokens_masked_idx: list | None = None
    targets: list | None = None

    def __post_init__(self):
        self.MSELoss = torch.nn.MSELoss()
        # the trainer's own hooks and loss, bound to this object
        self.net.encoder_to_decoder = types.MethodType(self.trainer_class.encoder_to_decoder, self)
        self.net.decoder_to_tail = types.MethodType(self.trainer_class.decoder_to_tail, self)

    def set_batch(self, tokens: torch.Tensor, target: torch.Tensor) -> list:
        """The reference's network input for clean ``tokens [B, L, T, Y, X, t, y, x]`` with ``target``
        tokens ``[B, L, T, Y, X]`` zeroed (its masking) and predicted; token infos are zeros."""
        B, L, T, Y, X = target.shape
        source = tokens.clone()
        source[target] = 0.0
        info = torch.zeros(B, L, T * Y * X, self.cf.size_token_info)
        flat = target.permute(1, 0, 2, 3, 4).reshape(L, B * T * Y * X)  # per level, over (sample, token)
        self.tokens_masked_idx = [[row.nonzero().squeeze(1) for row in flat]]
        per_level = tokens.permute(1, 0, 2, 3, 4, 5, 6, 7).reshape(L, B * T * Y * X, -1)
        self.targets = [torch.cat([per_level[lev][idx] for lev, idx in enumerate(self.tokens_masked_idx[0])])]
        return [(source, info)]

    def loss(self, preds) -> torch.Tensor:
        return self.trainer_class.loss(self, preds)[0]


def load_reference(checkout: str | Path, model: ModelConfig, checkpointing: bool) -> ReferenceRun:
    """Build the reference model for ``model``'s sizes from the checkout at ``checkout`` (on CPU)."""
    AtmoRep, Config, trainer_class = _import_reference(Path(checkout))
    cf = reference_config(Config, model, checkpointing)
    net = AtmoRep(cf).create(["cpu"], load_pretrained=False)
    return ReferenceRun(net=net, cf=cf, trainer_class=trainer_class, devices=["cpu"], fields_prediction_idx=[0],
                        loss_weights=torch.ones(1), device_out="cpu")
