"""Tiled prediction vs one whole-image forward pass: agreement, peak memory, time.

Each variant runs in its own subprocess so that its peak RSS (ru_maxrss) is its own.
Same model weights (U-Net base 32, depth 4, seeded init with non-trivial BatchNorm
statistics) and the same random image in both.

    python benchmarks/tiled_memory.py [--size 2048] [--tile 256] [--overlap 0.25]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, hardware, save_results  # noqa: E402


def _model():
    import torch

    from napari_unetseg.core.config import ModelSpec
    from napari_unetseg.core.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(depth=4, base_channels=32)).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def child(mode: str, size: int, tile: int, overlap: float, out: str) -> None:
    import torch

    from napari_unetseg.core.prediction import predict_tiled

    model = _model()
    image = np.random.default_rng(0).normal(size=(1, size, size)).astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if mode == "whole":
        with torch.inference_mode():
            scores = model(torch.from_numpy(image)[None])[0].numpy()
    else:
        scores = predict_tiled(model, image, tile, overlap, precision="fp32", device="cpu", batch_size=4)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(out, scores)
    print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "before_mb": base / 1024}))


def run(mode: str, args, out: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--size",
        str(args.size),
        "--tile",
        str(args.tile),
        "--overlap",
        str(args.overlap),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--child")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.size, args.tile, args.overlap, args.out)
    tmp = RESULTS
    tmp.mkdir(exist_ok=True)
    whole = run("whole", args, tmp / "whole.npy")
    tiled = run("tiled", args, tmp / "tiled.npy")
    a, b = np.load(tmp / "whole.npy"), np.load(tmp / "tiled.npy")
    m = 128  # away from the image border
    inner = (slice(None), slice(m, -m), slice(m, -m))
    results = {
        "hardware": hardware(),
        "size": args.size,
        "tile": args.tile,
        "overlap": args.overlap,
        "whole": whole,
        "tiled": tiled,
        "peak_rss_ratio_tiled_over_whole": round(tiled["peak_mb"] / whole["peak_mb"], 3),
        "time_ratio_tiled_over_whole": round(tiled["seconds"] / whole["seconds"], 3),
        "argmax_agreement_inner": float(np.mean(a[inner].argmax(0) == b[inner].argmax(0))),
        "max_abs_logit_diff_inner": float(np.abs(a[inner] - b[inner]).max()),
        "median_abs_logit_diff_inner": float(np.median(np.abs(a[inner] - b[inner]))),
    }
    for f in ("whole.npy", "tiled.npy"):
        (tmp / f).unlink()
    print(json.dumps(results, indent=2))
    save_results(results, "tiled_memory")


if __name__ == "__main__":
    main()
