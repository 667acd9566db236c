"""``python -m atmorep_coupler.finetune`` end to end on the analytic pair: a pretrained trainer checkpoint in, the
fine-tuned checkpoint and the scores of every system out."""

from __future__ import annotations

import json

from atmorep_coupler.model.checkpoint import FINETUNED_FORMAT, load_checkpoint, load_trainer_state


def test_finetune_command_writes_weights_and_scores(finetuned_run):
    out, printed = finetuned_run["out"], finetuned_run["printed"]
    assert "fine_tuned" in printed and "bilinear" in printed
    result = json.loads((out / "downscaling.json").read_text())
    systems = result["scores"]["systems"]
    assert set(systems) == {"fine_tuned", "zero_shot", "bilinear", "conservative"}
    assert result["fine_tuning"]["steps"] == 2 and result["scores"]["times"] == 6
    model, state = load_checkpoint(out / "finetuned.pt")  # the loader of the component and the verification
    assert state["format"] == FINETUNED_FORMAT
    assert any(k.startswith("fields.temperature_fine.tail") for k in state["model"])
    assert [f.name for f in model.fields][-1] == "temperature_fine"
    # what inference must repeat: the pretrained checkpoint's statistics, the fine grid and departure scale
    pretrained = load_trainer_state(finetuned_run["pretrained"])
    assert state["normalization"] == pretrained["normalization"]
    (record,) = state["downscaling"]
    assert record["field"] == "temperature_fine" and record["coarse_field"] == "temperature"
    assert record["departure_std"] == result["departure_std"] and len(record["latitudes"]) == 64
    assert record["levels"] == [850.0, 500.0] and record["refinement"] == 2 and record["baseline"] == "bilinear"
