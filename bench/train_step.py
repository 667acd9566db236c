"""One training step and one inference pass of the multiformer: time, memory, FLOPs, fraction of peak,
side by side with the original AtmoRep code when a checkout is given.

    python bench/train_step.py                                       # tiny:1, tiny:8, reference_u_2024:1 on CPU
    python bench/train_step.py --cases reference_u_2024:1 --threads 2 --repeats 2 \\
        --reference /path/to/clessig/atmorep --variants config off off+compile   # side by side, alternating
    python bench/train_step.py --cases reference_u_2024:8 --device cuda --precision bf16 --compile --peak-tflops 989

Every run is a fresh subprocess, so its peak memory is its own (``ru_maxrss`` on CPU,
``torch.cuda.max_memory_allocated`` on GPU). Inputs are synthetic: random tokens, zero metadata and a
fixed quarter of every level's tokens hidden and predicted (the mean selection rate of the default
BERT masking), the same positions for this project and the reference, so both do the same work.

Per run: a warm-up step whose forward and backward FLOPs are counted with ``torch.utils.flop_counter``
(fused attention included: the CPU flash kernels are registered below), then ``--steps`` timed steps
(``forward_s``, ``backward_s``, ``optimizer_s`` = AdamW as each side's trainer builds it, ``step_s``) and as many timed inference passes
(``eval`` + ``no_grad``, ``inference_s``), each also as process CPU time (``*_cpu_s``, all threads:
steadier than wall time when other jobs share the cores). In the same process the fp32 and bf16 matmul peaks are
measured (best of square products of 2048 and 4096), and ``fraction_of_fp32_peak`` /
``fraction_of_bf16_peak`` relate the achieved FLOP rate to them. With ``--compile`` the model is
``torch.compile``d (``compile_model``), ``compile_s`` is the first step's time minus a timed step's,
and the same for inference.

``--variants`` runs several set-ups of this project's model in the same alternation, each
``CHECKPOINTING[+compile]`` (``config``, ``on``, ``off`` or ``auto``), e.g. ``config off off+compile``:
the reference's own configuration, checkpointing off (the ``auto`` rule's choice on CPU) and the same
compiled; ``summary`` then also gives each compiled variant over its eager twin (the compile speed-up).

``--reference PATH`` adds the original AtmoRep (``bench/reference_atmorep.py``) for single-field
cases, with ``--checkpointing`` (default: the config's setting), alternating runs (``--repeats``) at the
same thread count, and ``summary`` gives the median ratios this project / reference for every variant.
The reference is not part of this repository; without a checkout the side-by-side part is skipped and
``notes`` says so.
The machine's load average is printed with the numbers: on a shared machine they are noisy, and the
ratios of alternating runs are the numbers to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASES = ("tiny:1", "tiny:8", "reference_u_2024:1")
TARGET_RATE = 0.25  # hidden and predicted fraction of each level's tokens


# ------------------------------------------------------------------------------------------ inputs
def target_tokens(config, batch_size: int, seed: int = 0) -> dict:
    """``[B, L, T, Y, X]`` flags: ``TARGET_RATE`` of each (sample, level)'s tokens, at random places."""
    import torch

    g = torch.Generator().manual_seed(seed)
    flags = {}
    for f in config.predicted_fields:
        n = f.tokens_per_level
        k = max(1, round(TARGET_RATE * n))
        order = torch.rand(batch_size, f.num_levels, n, generator=g).argsort(-1)
        flag = torch.zeros(batch_size, f.num_levels, n, dtype=torch.bool)
        flag.scatter_(-1, order[..., :k], True)
        flags[f.name] = flag.view(batch_size, f.num_levels, *f.num_tokens)
    return flags


def synthetic_batch(config, batch_size: int, seed: int = 0):
    """Clean tokens, this project's masked fields and metadata for ``config``."""
    import torch

    from atmorep_coupler.data.tokens import META_FEATURES
    from atmorep_coupler.model.masking import MaskedField

    g = torch.Generator().manual_seed(seed)
    tokens = {f.name: torch.randn(batch_size, f.num_levels, *f.num_tokens, *f.token_size, generator=g)
              for f in config.fields}
    targets = target_tokens(config, batch_size, seed)
    masked, meta = {}, {}
    for f in config.fields:
        target = targets.get(f.name, torch.zeros(batch_size, f.num_levels, *f.num_tokens, dtype=torch.bool))
        inputs = tokens[f.name].clone()
        inputs[target] = 0.0
        masked[f.name] = MaskedField(inputs, target.clone(), target, tokens[f.name][target])
        meta[f.name] = torch.zeros(batch_size, f.num_levels, *f.num_tokens, len(META_FEATURES))
    return tokens, targets, masked, meta


# ------------------------------------------------------------------------------------------ counting
def register_cpu_attention_flops() -> None:
    """``torch.utils.flop_counter`` knows the CUDA attention kernels; add the fused CPU ones."""
    import torch

    from torch.utils import flop_counter as fc

    forward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward in fc.flop_registry:
        return

    @fc.register_flop_formula(forward)
    def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    @fc.register_flop_formula(backward)
    def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def matmul_peak(dtype, device, sync, seconds: float = 1.0) -> float:
    """Best FLOP/s of square matrix products (2048, 4096) in ``dtype`` over about ``seconds`` each."""
    import torch

    best = 0.0
    for n in (2048, 4096):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b
        sync()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            a @ b
            sync()
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


# ------------------------------------------------------------------------------------------ one run
class Ours:
    """This project's multiformer behind the interface the timing loop uses."""

    def __init__(self, run, batch_size: int, device, checkpointing: str, compile_: bool):
        import torch

        from atmorep_coupler.model.multiformer import Multiformer, checkpointing_needed, compile_model

        config = run.model
        torch.manual_seed(0)
        self.module = Multiformer(config).to(device)
        setting = {"on": True, "off": False}.get(checkpointing)
        self.module.activation_checkpointing = (setting if setting is not None
                                                else checkpointing_needed(self.module, batch_size, device))
        self.checkpointing = self.module.activation_checkpointing
        self.model = compile_model(self.module) if compile_ else self.module
        self.run, self.device = run, device
        _, _, masked, meta = synthetic_batch(config, batch_size)
        self.masked = {k: v.to(device) for k, v in masked.items()}
        self.meta = {k: v.to(device) for k, v in meta.items()}
        self.weights = {f.name: f.loss_weight for f in config.predicted_fields}

    def optimizer(self):
        """AdamW as this project's Trainer builds it (fused kernel on CPU and CUDA)."""
        import torch

        return torch.optim.AdamW(self.module.parameters(), lr=1e-4, weight_decay=0.05,
                                 fused=self.device.type in ("cpu", "cuda"))

    def loss(self):
        from atmorep_coupler.model.losses import total_loss

        out = self.model(self.masked, self.meta)
        return total_loss(out, {k: self.masked[k].targets for k in out}, self.run.losses, self.weights)[0]

    def infer(self):
        return self.model(self.masked, self.meta)


class Reference:
    """The original AtmoRep (``bench/reference_atmorep.py``) behind the same interface."""

    def __init__(self, run, batch_size: int, device, checkpointing: str, checkout: str):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import torch

        from reference_atmorep import cpu_get_device, load_reference

        from atmorep_coupler.model.multiformer import Multiformer, checkpointing_needed

        setting = {"on": True, "off": False}.get(checkpointing)
        if setting is None:  # the same rule as this project's, for the same model size
            setting = checkpointing_needed(Multiformer(run.model), batch_size, device)
        self.checkpointing = setting
        torch.manual_seed(0)
        self.ref = load_reference(checkout, run.model, setting)
        self.module = self.ref.net.to(device)
        tokens, targets, _, _ = synthetic_batch(run.model, batch_size)
        name = run.model.fields[0].name
        self.batch = [(s.to(device), i.to(device)) for s, i in self.ref.set_batch(tokens[name], targets[name])]
        self.ref.targets = [t.to(device) for t in self.ref.targets]
        self.ref.tokens_masked_idx = [[i.to(device) for i in idx] for idx in self.ref.tokens_masked_idx]
        self._cpu = cpu_get_device

    def optimizer(self):
        """AdamW as the reference's trainer builds it (``core/trainer.py``)."""
        import torch

        return torch.optim.AdamW(self.module.parameters(), lr=1e-4, weight_decay=0.05)

    def loss(self):
        with self._cpu():
            preds, _ = self.module(self.batch)
            return self.ref.loss(preds)

    def infer(self):
        with self._cpu():
            return self.module(self.batch)


def run_once(spec: dict) -> dict:
    import torch

    from torch.utils.flop_counter import FlopCounterMode

    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    register_cpu_attention_flops()
    run = load_run_config(config_path(spec["config"]))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if spec["impl"] == "reference":
        model = Reference(run, spec["batch"], device, spec["checkpointing"], spec["reference"])
    else:
        model = Ours(run, spec["batch"], device, spec["checkpointing"], spec["compile"])
    optimizer = model.optimizer()
    bf16 = spec["precision"] == "bf16"
    if spec["precision"] == "bf32":  # fp32 tensors, matrix products with bf16 inputs (oneDNN on AMX; TF32 on GPUs)
        torch.set_float32_matmul_precision("medium")

    def step(count: FlopCounterMode | None = None) -> tuple[float, float, float, int, int, float]:
        model.module.train()
        sync()
        c0 = time.process_time()
        t0 = time.perf_counter()
        flops = []
        with count if count is not None else _null():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model.loss()
            sync()
            flops.append(count.get_total_flops() if count is not None else 0)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sync()
            flops.append(count.get_total_flops() - flops[0] if count is not None else 0)
        t2 = time.perf_counter()
        optimizer.step()
        sync()
        return t1 - t0, t2 - t1, time.perf_counter() - t2, flops[0], flops[1], time.process_time() - c0

    @torch.no_grad()
    def infer() -> tuple[float, float]:
        model.module.eval()
        sync()
        c = time.process_time()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model.infer()
        sync()
        return time.perf_counter() - t, time.process_time() - c

    start = time.perf_counter()
    if spec["compile"]:
        first_step = sum(step()[:3])
    warm = step(FlopCounterMode(display=False))
    if not spec["compile"]:
        first_step = sum(warm[:3])
    flops_forward, flops_backward = warm[3], warm[4]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [step() for _ in range(spec["steps"])]
    first_inference = infer()[0]
    inference = [infer() for _ in range(spec["steps"])]
    fp32_peak = matmul_peak(torch.float32, device, sync)
    bf16_peak = matmul_peak(torch.bfloat16, device, sync)
    fwd, bwd, opt = (statistics.median(t[i] for t in times) for i in range(3))
    step_s = statistics.median(sum(t[:3]) for t in times)
    inference_s = statistics.median(t[0] for t in inference)
    rate = (flops_forward + flops_backward) / (fwd + bwd)
    inference_rate = flops_forward / inference_s
    result = {
        "impl": spec["impl"], "config": spec["config"], "batch_size": spec["batch"],
        "parameters": sum(p.numel() for p in model.module.parameters()),
        "activation_checkpointing": model.checkpointing,
        "precision": {"bf16": "bf16 autocast", "bf32": "fp32, bf16 matmul inputs"}.get(spec["precision"], "fp32"),
        "compiled": spec["compile"], "threads": torch.get_num_threads(), "timed_steps": spec["steps"],
        "forward_s": round(fwd, 4), "backward_s": round(bwd, 4), "optimizer_s": round(opt, 4),
        "step_s": round(step_s, 4), "inference_s": round(inference_s, 4),
        "step_cpu_s": round(statistics.median(t[5] for t in times), 4),
        "inference_cpu_s": round(statistics.median(t[1] for t in inference), 4),
        "flops_forward": flops_forward, "flops_backward": flops_backward,
        "achieved_gflops_step": round(rate / 1e9, 2), "achieved_gflops_inference": round(inference_rate / 1e9, 2),
        "matmul_peak_gflops": {"fp32": round(fp32_peak / 1e9, 1), "bf16": round(bf16_peak / 1e9, 1)},
        "fraction_of_fp32_peak": {"step": round(rate / fp32_peak, 3), "inference": round(inference_rate / fp32_peak, 3)},
        "fraction_of_bf16_peak": {"step": round(rate / bf16_peak, 3), "inference": round(inference_rate / bf16_peak, 3)},
        "wall_s": round(time.perf_counter() - start, 1),
    }
    if spec["compile"]:
        result["compile_s"] = round(first_step - step_s, 1)
        result["compile_inference_s"] = round(first_inference - inference_s, 1)
    if device.type == "cuda":
        result["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if spec["peak_tflops"]:
            result["model_flops_utilisation"] = round(rate / 1e12 / spec["peak_tflops"], 4)
    else:
        result["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------------------------------ driver
def _label(result: dict) -> str:
    """``reference`` or this project's variant, e.g. ``ours[on]``, ``ours[off+compile]``."""
    if result["impl"] == "reference":
        return "reference"
    return f"ours[{'on' if result['activation_checkpointing'] else 'off'}{'+compile' if result['compiled'] else ''}]"


def _ratios(top: list[dict], bottom: list[dict]) -> dict:
    ratio = {}
    for key in ("forward_s", "backward_s", "step_s", "inference_s", "step_cpu_s", "inference_cpu_s", "peak_memory_mb"):
        ratio[key.removesuffix("_s")] = round(statistics.median(r[key] for r in top)
                                              / statistics.median(r[key] for r in bottom), 3)
    return ratio


def _summary(results: list[dict]) -> dict:
    """Median ratios of every variant of this project over the reference, and of compiled over eager."""
    summary = {}
    done = [r for r in results if "error" not in r]
    for case in sorted({(r["config"], r["batch_size"]) for r in done}):
        runs: dict[str, list[dict]] = {}
        for r in done:
            if (r["config"], r["batch_size"]) == case:
                runs.setdefault(_label(r), []).append(r)
        entry = {}
        for label, mine in sorted(runs.items()):
            if label == "reference":
                continue
            if "reference" in runs:
                entry[f"{label}/reference"] = _ratios(mine, runs["reference"])
            eager = label.replace("+compile", "")
            if eager != label and eager in runs:
                entry[f"{label}/{eager}"] = _ratios(mine, runs[eager])
        if entry:
            summary[f"{case[0]}:{case[1]}"] = entry | {"runs": {k: len(v) for k, v in runs.items()}}
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="CONFIG:BATCH entries")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 small, 2 reference)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--checkpointing", choices=["config", "on", "off", "auto"], default="config",
                        help="activation checkpointing: the config's setting (default), on, off, or the auto rule")
    parser.add_argument("--precision", choices=["fp32", "bf16", "bf32"], default="fp32",
                        help="bf16: autocast; bf32: fp32 with reduced-precision matrix products "
                             "(torch.set_float32_matmul_precision('medium'): bf16 on AMX CPUs, TF32 on GPUs)")
    parser.add_argument("--compile", action="store_true", help="torch.compile this project's model")
    parser.add_argument("--variants", nargs="+", metavar="CHECKPOINTING[+compile]",
                        help="set-ups of this project's model run in the same alternation, e.g. config off off+compile "
                             "(default: --checkpointing, compiled with --compile)")
    parser.add_argument("--reference", help="checkout of clessig/atmorep: also run the original, side by side")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per implementation")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device bf16 peak for the MFU (H100: 989)")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one run, as JSON, in this process
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.run:
        print(json.dumps(run_once(json.loads(args.run))))
        return
    import torch

    notes = []
    reference = args.reference
    if reference and not (Path(reference) / "atmorep" / "core" / "atmorep_model.py").is_file():
        notes.append(f"--reference {reference}: no clessig/atmorep checkout there; side-by-side part skipped")
        reference = None
    elif not reference:
        notes.append("no --reference checkout of clessig/atmorep given: this project only")
    results = []
    load_before = os.getloadavg()
    for case in args.cases:
        name, batch = case.split(":")
        from atmorep_coupler.train import config_path
        from atmorep_coupler.training.config import load_run_config

        config = load_run_config(config_path(name)).model
        impls = ["ours"]
        if reference and len(config.fields) == 1:
            impls.append("reference")
        elif reference:
            notes.append(f"{case}: the reference harness runs single-field configurations only")

        def resolved(checkpointing: str) -> str:
            if checkpointing != "config":
                return checkpointing
            setting = config.activation_checkpointing
            return setting if setting == "auto" else ("on" if setting else "off")

        runs = []
        for variant in args.variants or [args.checkpointing + ("+compile" if args.compile else "")]:
            checkpointing, _, extra = variant.partition("+")
            if checkpointing not in ("config", "on", "off", "auto") or extra not in ("", "compile"):
                raise SystemExit(f"--variants {variant}: expected CHECKPOINTING[+compile], CHECKPOINTING one of "
                                 "config, on, off, auto")
            runs.append(("ours", resolved(checkpointing), extra == "compile"))
        if "reference" in impls:
            runs.insert(1, ("reference", resolved(args.checkpointing), False))
        for repeat in range(args.repeats):
            for impl, checkpointing, compiled in runs if repeat % 2 == 0 else runs[::-1]:
                spec = {"impl": impl, "config": name, "batch": int(batch), "device": args.device,
                        "threads": args.threads, "checkpointing": checkpointing, "precision": args.precision,
                        "compile": compiled, "reference": reference,
                        "steps": args.steps or (2 if name.startswith("reference") else 10),
                        "peak_tflops": args.peak_tflops}
                done = subprocess.run([sys.executable, __file__, "--run", json.dumps(spec)], capture_output=True,
                                      text=True, cwd=ROOT)
                if done.returncode:
                    results.append({"case": case, "impl": impl, "checkpointing": checkpointing, "compiled": compiled,
                                    "error": done.stderr[-3000:]})
                else:
                    results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "train_step", "device": args.device, "torch": torch.__version__,
                      "load_average": {"before": [round(v, 1) for v in load_before],
                                       "after": [round(v, 1) for v in os.getloadavg()]},
                      "notes": notes, "results": results, "summary": _summary(results)}, indent=2))


if __name__ == "__main__":
    main()
