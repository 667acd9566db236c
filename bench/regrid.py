"""Regridding benchmark: weight generation (beside CDO), first-apply latency and throughput, as JSON.

Cases: 1 deg -> 2.5 deg; the Gaussian grid N48 (96 x 192, 48 latitudes per hemisphere) -> 1 deg;
ERA5 0.25 deg (721 x 1440, points at the poles) -> 1 deg. Methods (native backend): bilinear and
conservative (great-circle cells, as ESMF). Throughput = fields per second for a float32 batch,
with numpy (scipy.sparse) and torch (sparse CSR) on the CPU and, when available, on CUDA.

When ``cdo`` is on the PATH, conservative weight generation is timed side by side with CDO's
``gencon`` (alternating runs, each in a fresh process, from the grid to a SCRIP weight file on
disk), for great-circle cells and for latitude bands (``edges="parallels"``, what CDO computes);
``cdo_over_ours`` > 1 means this package is faster. Peak resident memory of each process is given.
The first ``apply`` to a numpy array is timed in a fresh process (it once imported xarray).

    python bench/regrid.py [--cases era5_0.25deg_to_1deg] [--methods bilinear] [--batch 16] [--cdo-repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder

#: Each case as Python source, so a fresh process can build the grids too.
CASES = {
    "1deg_to_2.5deg": ("LatLonGrid(180, 360)", "LatLonGrid(72, 144)"),
    "N48_96x192_to_1deg": ("GaussianGrid(96, 192)", "LatLonGrid(180, 360)"),
    "era5_0.25deg_to_1deg": (
        "LatLonGrid.from_centers(np.linspace(90, -90, 721), np.arange(1440) * 0.25)",
        "LatLonGrid(180, 360)",
    ),
}
_NAMESPACE = {"np": np, "LatLonGrid": LatLonGrid, "GaussianGrid": GaussianGrid}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--methods", nargs="+", default=["bilinear", "conservative"])
    parser.add_argument("--batch", type=int, default=16, help="fields per apply call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cdo-repeat", type=int, default=3, help="alternating runs of ours and CDO's per variant (0: skip)")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser


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


#: A fresh process: import, build the grids, generate conservative_normed weights, write a SCRIP file.
_OURS = textwrap.dedent(
    """
    import json, sys, time
    start = time.perf_counter()
    import numpy as np
    from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder
    imported = time.perf_counter()
    src, dst = {src}, {dst}
    regridder = Regridder(src, dst, "conservative_normed", edges={edges!r}, progress=False)
    regridder.to_file(sys.argv[1], layout="scrip", format="NETCDF4")
    done = time.perf_counter()
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({{"import_s": imported - start, "work_s": done - imported, "peak_rss_mb": int(hwm.split()[1]) / 1024}}))
    """
)
def run_with_peak_rss(command: list[str], cwd: Path) -> float:
    """Run ``command``; return its peak resident memory (MB), polling /proc/PID/status every 10 ms.

    (``getrusage`` would count the memory of this process too: a child's high-water mark includes
    the image it was forked from.)
    """
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                hwm = next((line for line in status if line.startswith("VmHWM")), None)
            if hwm:
                peak = max(peak, int(hwm.split()[1]) / 1024)
        except OSError:
            pass
        time.sleep(0.01)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.read().decode()}")
    return peak


def write_cdo_input(path: Path, grid: LatLonGrid) -> None:
    """A CF file with one field on ``grid`` and its cell bounds, which CDO reads as the grid."""
    import xarray as xr

    lat, lon = grid.dims
    ds = grid.to_dataset()[[f"{lat}_bounds", f"{lon}_bounds"]]
    ds["f"] = (grid.dims, np.zeros(grid.shape, np.float32))
    ds.to_netcdf(path)


def versus_cdo(case: str, src: LatLonGrid, dst: LatLonGrid, repeat: int, cdo: str) -> dict:
    """Alternating runs of CDO's gencon and of ours (great circles, latitude bands): wall times (median,
    min), CPU-independent of start-up where possible, and peak memory."""
    src_code, dst_code = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cdo_input(tmp / "src.nc", src)
        write_cdo_input(tmp / "dst.nc", dst)
        runs: dict[str, list[dict]] = {"cdo": [], "ours_great_circle": [], "ours_parallels": []}
        for _ in range(repeat):
            start = time.perf_counter()
            peak = run_with_peak_rss([cdo, "-s", "gencon,dst.nc", "src.nc", "cdo.nc"], tmp)
            runs["cdo"].append({"wall_s": time.perf_counter() - start, "peak_rss_mb": peak})
            for edges in ("great_circle", "parallels"):
                start = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-c", _OURS.format(src=src_code, dst=dst_code, edges=edges), str(tmp / "ours.nc")],
                    capture_output=True, text=True, check=True,
                )
                stats = json.loads(out.stdout.strip().splitlines()[-1])
                runs[f"ours_{edges}"].append({"wall_s": time.perf_counter() - start, **stats})
    summary = {}
    for name, rs in runs.items():
        entry = {
            "wall_s_median": round(statistics.median(r["wall_s"] for r in rs), 3),
            "wall_s_min": round(min(r["wall_s"] for r in rs), 3),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs), 1),
        }
        if name != "cdo":  # the time without the Python start-up and imports (CDO's start-up is ~0.05 s)
            entry["work_s_median"] = round(statistics.median(r["work_s"] for r in rs), 3)
            entry["import_s_median"] = round(statistics.median(r["import_s"] for r in rs), 3)
        summary[name] = entry
    cdo_wall = summary["cdo"]["wall_s_median"]
    for name in ("ours_great_circle", "ours_parallels"):
        summary[name]["cdo_over_ours"] = round(cdo_wall / summary[name]["work_s_median"], 2)
        summary[name]["cdo_over_ours_with_python_startup"] = round(cdo_wall / summary[name]["wall_s_median"], 2)
    summary["runs"] = repeat
    summary["what"] = "grid file(s) in, SCRIP weight file out; conservative, FRACAREA; alternating fresh processes"
    return summary


#: A fresh process: the first and second ``apply`` of a regridder to a numpy array.
_FIRST_APPLY = textwrap.dedent(
    """
    import json, time
    import numpy as np
    from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder
    regridder = Regridder({src}, {dst}, "bilinear", progress=False)
    x = np.zeros(regridder.src_grid.shape, np.float32)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        regridder.apply(x)
        times.append(time.perf_counter() - start)
    print(json.dumps({{"first_s": times[0], "second_s": times[1]}}))
    """
)


def first_apply(case: str) -> dict[str, float]:
    """Seconds of the first and the second ``apply`` to one numpy field, in a fresh process."""
    src_code, dst_code = CASES[case]
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_APPLY.format(src=src_code, dst=dst_code)], capture_output=True, text=True, check=True
    )
    return {k: round(v, 4) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def _first_line(command: list[str]) -> str:
    out = subprocess.run(command, capture_output=True, text=True)
    return (out.stdout + out.stderr).strip().splitlines()[0]


def main() -> None:
    args = build_parser().parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    cdo = shutil.which("cdo")
    results = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cdo": _first_line([cdo, "--version"]) if cdo else None,
        },
        "batch": args.batch,
        "cases": {},
    }
    for case in args.cases:
        src, dst = (eval(code, _NAMESPACE) for code in CASES[case])  # noqa: S307 (the fixed table above)
        entry = {"src_shape": list(src.shape), "dst_shape": list(dst.shape), "methods": {}}
        for method in args.methods:
            start = time.perf_counter()
            regridder = Regridder(src, dst, method, progress=False)
            seconds = time.perf_counter() - start
            entry["methods"][method] = {
                "weight_generation_s": round(seconds, 3),
                "nnz": int(regridder.weights.matrix.nnz),
                "fields_per_s": throughput(regridder, args.batch, args.repeat),
            }
        entry["apply_numpy_fresh_process_s"] = first_apply(case)
        if cdo and args.cdo_repeat > 0:
            entry["conservative_vs_cdo"] = versus_cdo(case, src, dst, args.cdo_repeat, cdo)
        results["cases"][case] = entry
        print(json.dumps({case: entry}), file=sys.stderr)  # progress, one line per case
    results["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
