"""Forward + backward throughput and peak memory of one training step of the multiformer.

    python bench/train_step.py                      # tiny (batch 1 and 8) and reference_u_2024 (batch 1), CPU
    python bench/train_step.py --cases tiny:1 --device cuda --peak-tflops 989

Each case runs in a fresh subprocess, so its peak memory (``ru_maxrss`` on CPU,
``torch.cuda.max_memory_allocated`` on GPU) is its own. Inputs are synthetic (random tokens, real
metadata encoding, the config's own masking), so the numbers measure the model, not the data
pipeline. The first step is a warm-up whose FLOPs are counted with ``torch.utils.flop_counter``; the
following ``--steps`` are timed. On CUDA the step runs under bf16 autocast and the JSON adds model-FLOPs
utilisation (``achieved / --peak-tflops``). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from pathlib import Path

DEFAULT_CASES = ("tiny:1", "tiny:8", "reference_u_2024:1")


def synthetic_batch(config, batch_size: int, seed: int = 0):
    import numpy as np
    import torch

    from atmorep_coupler.data.tokens import token_metadata
    from atmorep_coupler.model.masking import Masker

    g = torch.Generator().manual_seed(seed)
    nt, ny, nx = config.neighbourhood
    tokens = {f.name: torch.randn(batch_size, f.num_levels, *f.num_tokens, *f.token_size, generator=g)
              for f in config.fields}
    times = np.datetime64("2021-06-01T00", "ns") + np.arange(nt)[None].repeat(batch_size, 0) * np.timedelta64(1, "h")
    lat = np.linspace(60.0, 60.0 - 0.25 * (ny - 1), ny)[None].repeat(batch_size, 0)
    lon = (np.arange(nx) * 0.25)[None].repeat(batch_size, 0)
    meta = {f.name: torch.from_numpy(token_metadata(times, lat, lon, f.levels, f.token_size)) for f in config.fields}
    return Masker(config)(tokens, seed, (0, 0, 0)), meta


def run_case(name: str, batch_size: int, steps: int, device: str, threads: int | None, peak_tflops: float | None) -> dict:
    import torch

    from torch.utils.flop_counter import FlopCounterMode

    from atmorep_coupler.model.losses import total_loss
    from atmorep_coupler.model.multiformer import Multiformer
    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config

    if threads:
        torch.set_num_threads(threads)
    run = load_run_config(config_path(name))
    config = run.model
    dev = torch.device(device)
    torch.manual_seed(0)
    model = Multiformer(config).to(dev).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    masked, meta = synthetic_batch(config, batch_size)
    masked = {k: v.to(dev) for k, v in masked.items()}
    meta = {k: v.to(dev) for k, v in meta.items()}
    weights = {f.name: f.loss_weight for f in config.predicted_fields}
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        with amp:
            out = model(masked, meta)
        loss, _ = total_loss(out, {k: masked[k].targets for k in out}, run.losses, weights)
        sync()
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t2 = time.perf_counter()
        optimizer.step()
        sync()
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    with FlopCounterMode(display=False) as counter:  # warm-up step, FLOPs counted
        step()
    flops = counter.get_total_flops()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = [step() for _ in range(steps)]
    fwd, bwd, opt = (sum(t[i] for t in times) / steps for i in range(3))
    result = {
        "config": name,
        "batch_size": batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_sample": {f.name: f.num_levels * f.tokens_per_level for f in config.fields},
        "timed_steps": steps,
        "forward_s": round(fwd, 4),
        "backward_s": round(bwd, 4),
        "optimizer_s": round(opt, 4),
        "forward_backward_samples_per_s": round(batch_size / (fwd + bwd), 3),
        "flops_per_sample_forward_backward": flops / batch_size,
        "achieved_tflops": round(flops / (fwd + bwd) / 1e12, 4),
        "threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if dev.type == "cuda" else "fp32",
    }
    if dev.type == "cuda":
        result["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        if peak_tflops:
            result["model_flops_utilisation"] = round(result["achieved_tflops"] / peak_tflops, 4)
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="CONFIG:BATCH entries")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 small, 2 reference)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for the MFU (e.g. H100 bf16: 989)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        name, batch = args.case.split(":")
        steps = args.steps or (2 if name.startswith("reference") else 10)
        print(json.dumps(run_case(name, int(batch), steps, args.device, args.threads, args.peak_tflops)))
        return
    import torch

    results = []
    for case in args.cases:
        cmd = [sys.executable, __file__, "--case", case, "--device", args.device]
        for flag, value in (("--steps", args.steps), ("--threads", args.threads), ("--peak-tflops", args.peak_tflops)):
            if value is not None:
                cmd += [flag, str(value)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if done.returncode:
            results.append({"case": case, "error": done.stderr[-2000:]})
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps({"benchmark": "train_step", "device": args.device, "torch": torch.__version__,
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
