"""Regridding benchmark: weight-generation time and apply throughput, printed as JSON.

Cases: 1 deg -> 2.5 deg, Gaussian N48 (48 x 96) -> 1 deg, ERA5 0.25 deg (721 x 1440, points at the
poles) -> 1 deg; methods bilinear and conservative (native backend). Throughput = fields per
second for a float32 batch, with numpy (scipy.sparse) and torch (sparse CSR) on the CPU and, when
available, on CUDA.

    python bench/regrid.py [--cases era5_0.25deg_to_1deg] [--methods bilinear] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder

CASES = {
    "1deg_to_2.5deg": (lambda: LatLonGrid(180, 360), lambda: LatLonGrid(72, 144)),
    "N48_to_1deg": (lambda: GaussianGrid(48), lambda: LatLonGrid(180, 360)),
    "era5_0.25deg_to_1deg": (
        lambda: LatLonGrid.from_centers(np.linspace(90, -90, 721), np.arange(1440) * 0.25),
        lambda: LatLonGrid(180, 360),
    ),
}


def best_time(fn, repeat: int, sync=lambda: None) -> float:
    """Smallest wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(regridder: Regridder, batch: int, repeat: int) -> dict[str, float]:
    """Fields per second for a float32 batch: numpy, torch CPU, torch CUDA (if present)."""
    x = np.random.default_rng(0).standard_normal((batch, *regridder.src_grid.shape)).astype(np.float32)
    out = {"numpy": batch / best_time(lambda: regridder.apply(x), repeat)}
    xt = torch.from_numpy(x)
    out["torch_cpu"] = batch / best_time(lambda: regridder.apply(xt), repeat)
    if torch.cuda.is_available():
        xc = xt.cuda()
        out["torch_cuda"] = batch / best_time(lambda: regridder.apply(xc), repeat, torch.cuda.synchronize)
    return {k: round(v, 1) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--methods", nargs="+", default=["bilinear", "conservative"])
    parser.add_argument("--batch", type=int, default=16, help="fields per apply call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    results = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "batch": args.batch,
        "cases": {},
    }
    for case in args.cases:
        make_src, make_dst = CASES[case]
        src, dst = make_src(), make_dst()
        entry = {"src_shape": list(src.shape), "dst_shape": list(dst.shape), "methods": {}}
        for method in args.methods:
            start = time.perf_counter()
            regridder = Regridder(src, dst, method)
            seconds = time.perf_counter() - start
            entry["methods"][method] = {
                "weight_generation_s": round(seconds, 3),
                "nnz": int(regridder.weights.matrix.nnz),
                "fields_per_s": throughput(regridder, args.batch, args.repeat),
            }
        results["cases"][case] = entry
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
