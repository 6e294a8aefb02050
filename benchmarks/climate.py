"""Climate benchmark: the VAEformer codec vs SZ3, ZFP and bit-rounding + zstd, at equal RMSE, on held-out fields.

Fields: the validation split of ``codec.training.climate_data`` (the last 10 % of every multi-field
variable, one in ten single-field variables), read in physical units from the original files.
For every field and every shipped quality, the codec's record (plus its deflated missing-value
mask, counted as the baselines count theirs) gives bytes and RMSE; each baseline is then tuned to
the same RMSE (``match_rmse``) and its bytes recorded.  The error-bounded mode runs at bounds of
``--bounds`` x the field's standard deviation, side by side with SZ3 at the same absolute bound, on
the network's own levels (a refinement quality with a bound is its finest level with the tighter one).
A refinement quality (q4, q5: every point within k field standard deviations) is also compared with
SZ3 at the same pointwise bound.
Ratios are against float32 (4 bytes per grid point).  Throughput of ``codec.encode``/``decode`` on
a whole file runs in a subprocess (its own peak RSS).

With ``--highres`` the fields are those of the high-resolution validation files
(``codec.training.climate_data.HIGHRES_VALIDATION``: 0.25-1 degree, held out whole), the bounds default
to 0.01, 0.05 and 0.2 field standard deviations, every row also carries encode / decode seconds (ours,
SZ3 at its matched setting), and the codec is also run at CRA5's published error levels (t850 RMSE
0.3 K, z500 RMSE 8 m2/s2) beside SZ3 at the same RMSE.  Results go to ``climate_highres_*``.

Usage (from the repository root)::

    python benchmarks/climate.py                         # all files, every shipped quality
    python benchmarks/climate.py --files monthly_navy_winds.cdf --qualities 2
    python benchmarks/climate.py --highres               # the 0.25-1 degree validation files
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

import climate_baselines as cb
import numpy as np
import torch
from _common import RESULTS_DIR

from codec import registry
from codec.climate import archive, dataset, fieldcodec
from codec.models.vaeformer import LevelCoder
from codec.training.climate_data import HIGHRES_VALIDATION, is_validation

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "climate"
DEFAULT_FILES = ("coads_climatology.cdf", "monthly_navy_winds.cdf", "levitus_climatology.cdf", "esku_heat_budget.cdf", "gfs.grb")
BASELINES = ("sz3", "zfp", "bitround+zstd")
# CRA5's published error levels (Han et al. 2024): t850 RMSE about 0.3 K, z500 RMSE 6-10 m2/s2 (8 here; gh in m: 8 / g)
CRA5_LEVELS = {
    ("t850.grib", "isobaricInhPa/t", 0): 0.3,
    ("data.nc", "t", 1): 0.3,  # levels 1000, 850, 500 hPa
    ("z500.grib", "isobaricInhPa/z", 0): 8.0,
    ("gfs.complex.grib2", "isobaricInhPa/gh", 0): 8.0 / 9.80665,
}


def held_out(files: list[Path], per_variable: int, whole_files: bool = False) -> list[dict]:
    """Validation fields in physical units (float64 with NaN), at most ``per_variable`` per variable
    (``whole_files``: every field of the files is held out)."""
    out = []
    for path in files:
        with dataset.open_source(path) as source:
            for var in source.variables:
                kept = 0
                for i, field in enumerate(source.fields(var)):
                    held = whole_files or is_validation(var.name, i, var.n_fields)
                    if kept < per_variable and held and np.isfinite(np.nanstd(field)) and np.nanstd(field) > 0:
                        out.append({"file": path.name, "variable": var.name, "index": i, "field": field, "spec": var})
                        kept += 1
    return out


def mask_bytes(field: np.ndarray) -> int:
    """What the codec's container spends on this field's missing-value mask (0 without NaN)."""
    missing = np.isnan(field)
    return len(zlib.compress(np.packbits(missing.ravel()).tobytes(), 9)) if missing.any() else 0


def errors(field: np.ndarray, recon: np.ndarray) -> dict:
    """RMSE, RMSE / std and max error over valid points, of the float32 values a file would store."""
    stored = recon.astype(np.float32)
    std = float(np.nanstd(field))
    rmse = cb.rmse(field.astype(np.float32), stored)
    return {"rmse": rmse, "nrmse": rmse / std, "max_abs_error": cb.max_abs_error(field.astype(np.float32), stored), "std": std}


def run_ours(item: dict, coder: LevelCoder, bound: float | None) -> dict:
    """The codec at one level on one field (the record code of files, with the variable's packing), timed both ways."""
    field, var = item["field"], item["spec"]
    spec = archive.field_spec(var, bound)
    with torch.inference_mode():
        t = time.perf_counter()
        record, recon = fieldcodec.encode(coder, field, spec)
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        fieldcodec.decode(coder, record, spec, ~np.isnan(field))
        t_dec = time.perf_counter() - t
    grid = record[fieldcodec._HEAD.size] if spec.record_version >= 2 else 0
    return {"bytes": len(record) + archive.RECORD_ENTRY_BYTES + mask_bytes(field), "encode_s": t_enc, "decode_s": t_dec, "grid": grid, **errors(field, recon)}


def sz3_seconds(field: np.ndarray, bound: float) -> tuple[float, float]:
    """SZ3's compress and decompress seconds at ``bound`` on ``field`` (NaN filled as the baseline does)."""
    data, _ = cb._prepare(field)
    config = cb.szConfig()
    config.errorBoundMode = cb.szErrorBoundMode.ABS
    config.absErrorBound = float(bound)
    t = time.perf_counter()
    stream, _ = cb.sz.compress(data, config)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    cb.sz.decompress(stream, np.float32, data.shape)
    return t_enc, time.perf_counter() - t


def sz3_bounded(field: np.ndarray, bound: float, setting: str) -> dict:
    """An ``sz3 (bound)`` row: SZ3 with the absolute error bound ``bound``."""
    r = cb.sz3(field, bound)
    t_enc, t_dec = sz3_seconds(field, bound)
    return {"method": "sz3 (bound)", "setting": setting, "bound": bound, "bytes": r.nbytes, "encode_s": t_enc, "decode_s": t_dec, **errors(field, r.recon.astype(np.float64))}


def cra5_rows(items: list[dict], coder: LevelCoder) -> list[dict]:
    """At CRA5's error levels: the bound whose RMSE is the largest at or below the target (bisection), and SZ3 at that RMSE."""
    rows = []
    for item in items:
        target = CRA5_LEVELS.get((item["file"], item["variable"], item["index"]))
        if target is None:
            continue
        lo, hi, best = target * 0.5, target * 4.0, None
        for _ in range(10):
            mid = (lo * hi) ** 0.5
            r = run_ours(item, coder, mid)
            if r["rmse"] <= target:
                lo, best = mid, {**r, "bound": mid}
            else:
                hi = mid
        if best is None:
            continue
        base = {"file": item["file"], "variable": item["variable"], "index": item["index"], "raw_bytes": 4 * item["field"].size, "target_rmse": target}
        rows.append({**base, "method": "vaeformer+bound", "setting": f"cra5 rmse {target:.3g}", **best})
        sz = cb.match_rmse("sz3", item["field"], best["rmse"])
        t_enc, t_dec = sz3_seconds(item["field"], sz.param)
        rows.append({
            **base, "method": "sz3", "setting": f"cra5 rmse {target:.3g}", "bytes": sz.nbytes, "encode_s": t_enc, "decode_s": t_dec,
            **errors(item["field"], sz.recon.astype(np.float64)),
        })
    return rows


def evaluate(items: list[dict], qualities: list[int], bounds: list[float]) -> list[dict]:
    """One row per (field, method, setting)."""
    torch.set_num_threads(2)
    rows = []
    for q in qualities:
        coder = registry.load("vaeformer", q).model.at_level(q)
        for k, item in enumerate(items):
            field = item["field"]
            base = {"file": item["file"], "variable": item["variable"], "index": item["index"], "raw_bytes": 4 * field.size}
            ours = run_ours(item, coder, None)
            relative = {} if coder.relative_bound is None else {"bound": coder.relative_bound * ours["std"]}
            rows.append({**base, "method": "vaeformer", "setting": f"q{q}", **relative, **ours})
            if relative:  # a refinement quality bounds every point: SZ3 at the same bound too
                rows.append({**base, **sz3_bounded(field, relative["bound"], f"E={coder.relative_bound}sd")})
            for name in BASELINES:
                try:
                    r = cb.match_rmse(name, field, ours["rmse"])
                except ValueError:
                    continue
                seconds = dict(zip(("encode_s", "decode_s"), sz3_seconds(field, r.param), strict=True)) if name == "sz3" else {}
                rows.append({**base, "method": name, "setting": f"=q{q}", "bytes": r.nbytes, **seconds, **errors(field, r.recon.astype(np.float64))})
            for c in bounds if coder.relative_bound is None else ():  # a refinement quality's bounded rows repeat q3's
                bound = c * ours["std"]
                rows.append({**base, "method": "vaeformer+bound", "setting": f"q{q} E={c}sd", "bound": bound, **run_ours(item, coder, bound)})
                if q == qualities[0]:
                    rows.append({**base, **sz3_bounded(field, bound, f"E={c}sd")})
            print(f"q{q}: {k + 1}/{len(items)} fields", end="\r", file=sys.stderr)
    print(file=sys.stderr)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per (method, setting): total ratio, mean NRMSE, worst max error relative to the bound."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["setting"])].append(r)
    out = []
    for (method, setting), rs in groups.items():
        timed = [r for r in rs if "encode_s" in r]
        out.append(
            {
                "method": method,
                "setting": setting,
                "fields": len(rs),
                "ratio": sum(r["raw_bytes"] for r in rs) / sum(r["bytes"] for r in rs),
                "mean_nrmse": float(np.mean([r["nrmse"] for r in rs])),
                "max_error_over_bound": max((r["max_abs_error"] / r["bound"] for r in rs if "bound" in r), default=None),
                "encode_s": sum(r["encode_s"] for r in timed) if timed else None,
                "decode_s": sum(r["decode_s"] for r in timed) if timed else None,
            }
        )
    return out


def per_variable(rows: list[dict], setting_of_ours: str) -> list[dict]:
    """For one quality: per variable, ratio and RMSE of the codec and of each baseline at equal RMSE."""
    table: dict[tuple, dict] = {}
    for r in rows:
        if (r["method"], r["setting"]) in (("vaeformer", setting_of_ours),) or r["setting"] == f"={setting_of_ours}":
            key = (r["file"], r["variable"])
            entry = table.setdefault(key, {"file": r["file"], "variable": r["variable"], "raw": 0})
            if r["method"] == "vaeformer":
                entry["raw"] += r["raw_bytes"]
                entry["rmse"] = entry.get("rmse", []) + [r["rmse"]]
                entry["max"] = max(entry.get("max", 0.0), r["max_abs_error"])
            entry[r["method"]] = entry.get(r["method"], 0) + r["bytes"]
    out = []
    for e in table.values():
        row = {"file": e["file"], "variable": e["variable"], "rmse": float(np.mean(e["rmse"])), "max_abs_error": e["max"]}
        for m in ("vaeformer", *BASELINES):
            row[f"ratio_{m}"] = e["raw"] / e[m] if m in e else None
        out.append(row)
    return out


def throughput(path: Path, quality: int, scheduler: str | None = None) -> dict:
    """Encode and decode MB/s (float32 input) and peak RSS of ``codec.encode``/``decode`` on one file, in a subprocess.

    ``scheduler``: encode with dask (``"threads"`` or ``"processes"``, 2 workers) instead of field by field.
    """
    code = f"""
import json, resource, time, codec
t = time.perf_counter(); data = codec.encode({str(path)!r}, quality={quality}, scheduler={scheduler!r}, workers=2); t_enc = time.perf_counter() - t
info = codec.info(data)
t = time.perf_counter(); ds = codec.decode(data).load(); t_dec = time.perf_counter() - t
mb = info["float32_bytes"] / 1e6
print(json.dumps({{"file": {path.name!r}, "scheduler": {scheduler!r}, "float32_mb": mb, "ratio": info["compression_ratio"], "encode_mb_s": mb / t_enc,
    "decode_mb_s": mb / t_dec, "encode_s": t_enc, "decode_s": t_dec, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(summary: list[dict], path: Path) -> None:
    """Ratio vs mean NRMSE for every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    styles = {"vaeformer": "o-", "vaeformer+bound": "s--", "sz3": "^:", "zfp": "v:", "bitround+zstd": "d:", "sz3 (bound)": "x-"}
    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in (r for r in summary if not r["setting"].startswith("cra5")):  # the bounded mode: one line per quality, across bounds
        label = f"{r['method']} {r['setting'].split()[0]}" if r["method"] == "vaeformer+bound" else r["method"]
        series[(r["method"], label)].append((r["mean_nrmse"], r["ratio"]))
    for (method, label), pts in series.items():
        ax.plot(*zip(*sorted(pts), strict=True), styles[method], label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean RMSE / field standard deviation")
    ax.set_ylabel("compression ratio vs float32")
    ax.set_title("Held-out climate fields")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_table(rows: list[dict], path: Path) -> None:
    """Markdown table of ``rows``."""
    keys = list(rows[0])

    def fmt(v):  # noqa: ANN001, ANN202
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    """Run the benchmark and write ``benchmarks/results/climate_*``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--files", nargs="*", default=list(DEFAULT_FILES))
    parser.add_argument("--qualities", type=int, nargs="*", default=None)
    parser.add_argument("--bounds", type=float, nargs="*", default=[0.02, 0.1, 0.3], help="error bounds in field standard deviations")
    parser.add_argument("--per-variable", type=int, default=3, help="held-out fields per variable")
    parser.add_argument("--throughput-file", default=None, help="file for the whole-file throughput runs (default: monthly_navy_winds.cdf; --highres: data.nc)")
    parser.add_argument("--highres", action="store_true", help="the high-resolution validation files (see the module docstring)")
    args = parser.parse_args()
    qualities = args.qualities or registry.shipped_qualities("vaeformer")
    t0 = time.time()
    if args.highres:
        data, prefix = args.data / "highres", "climate_highres"
        files = args.files if "--files" in sys.argv else list(HIGHRES_VALIDATION)
        bounds = args.bounds if "--bounds" in sys.argv else [0.01, 0.05, 0.2]
    else:
        data, files, prefix, bounds = args.data, args.files, "climate", args.bounds
    items = held_out([data / f for f in files], args.per_variable, whole_files=args.highres)
    print(f"{len(items)} held-out fields", file=sys.stderr)
    rows = evaluate(items, qualities, bounds)
    if args.highres:
        rows += cra5_rows(items, registry.load("vaeformer", 3).model.at_level(3))
    summary = summarize(rows)
    RESULTS_DIR.mkdir(exist_ok=True)
    with open(RESULTS_DIR / f"{prefix}_fields.csv", "w", newline="") as fh:
        keys = sorted({k for r in rows for k in r})
        writer = csv.DictWriter(fh, keys)
        writer.writeheader()
        writer.writerows(rows)
    write_table(summary, RESULTS_DIR / f"{prefix}_summary.md")
    variables = per_variable(rows, f"q{qualities[len(qualities) // 2]}")
    write_table(variables, RESULTS_DIR / f"{prefix}_variables.md")
    throughput_file = args.throughput_file or ("data.nc" if args.highres else "monthly_navy_winds.cdf")
    speed = [throughput(data / throughput_file, qualities[len(qualities) // 2], s) for s in (None, "threads", "processes")]
    plot(summary, RESULTS_DIR / f"{prefix}_rd.png")
    (RESULTS_DIR / f"{prefix}.json").write_text(json.dumps({"summary": summary, "per_variable": variables, "throughput": speed, "seconds": time.time() - t0}, indent=1))
    print(open(RESULTS_DIR / f"{prefix}_summary.md").read())
    print(json.dumps(speed))


if __name__ == "__main__":
    main()
