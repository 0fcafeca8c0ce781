"""Peak memory of ``unetseg predict`` on a stack far larger than one slice.

Writes a (slices, size, size) uint16 TIFF (default 100 x 2048 x 2048 = 800 MB, built
slice by slice so this script stays small too), trains a tiny model for a few steps
(memory here is about the stack and the outputs, not the network), then runs
``unetseg predict`` in a subprocess with and without ``--probabilities`` and reports
each run's peak RSS (ru_maxrss of the child) against the input file's size.

    python benchmarks/large_stack_memory.py [--slices 100] [--size 2048] [--folder /tmp]

Target (issue 4): less than 1.5 GB above the stack's own size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, save_results  # noqa: E402


def write_stack(path: Path, slices: int, size: int) -> None:
    import tifffile

    stack = tifffile.memmap(path, shape=(slices, size, size), dtype=np.uint16, metadata={"axes": "ZYX"})
    yy, xx = np.mgrid[:size, :size]
    for z in range(slices):
        blobs = (np.sin(xx / 37.0 + z / 9) * np.cos(yy / 41.0) > 0.6) * 3000
        stack[z] = (blobs + 500 + (z * 7 + yy % 97) % 200).astype(np.uint16)
    stack.flush()
    del stack


def tiny_model(path: Path) -> None:
    from napari_unetseg.core.checkpoint import save_model
    from napari_unetseg.core.config import ModelSpec, TrainConfig
    from napari_unetseg.core.sample import make_sample
    from napari_unetseg.core.training import train

    sample = make_sample(n_slices=2, size=96)
    config = TrainConfig(steps=3, patch_size=64, batch_size=2)
    save_model(
        train([sample.image[:, None]], [sample.strokes], ModelSpec(base_channels=4, depth=2), config).loaded,
        path,
    )


def predict(model: Path, image: Path, out: Path, extra: list[str]) -> dict:
    """``unetseg predict`` in a child process that reports its own peak RSS."""
    argv = ["predict", "--model", str(model), "--out", str(out), "--device", "cpu", *extra, str(image)]
    code = (
        "import json, resource, sys; from napari_unetseg.cli import main; code = main(sys.argv[1:]); "
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); sys.exit(code)"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kb = int(proc.stdout.strip().splitlines()[-1])
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument(
        "--folder", default=None, help="where the stack and outputs go (default: a temp folder)"
    )
    args = parser.parse_args()

    print(f"# {hardware()}")
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        tmp = Path(tmp)
        image = tmp / "stack.tif"
        write_stack(image, args.slices, args.size)
        tiny_model(tmp / "model.pt")
        input_mb = image.stat().st_size / 2**20
        rows = {}
        for name, extra in (("labels", []), ("labels + probabilities", ["--probabilities"])):
            out = tmp / name.replace(" + ", "_")
            row = predict(tmp / "model.pt", image, out, extra)
            row["output_mb"] = round(sum(p.stat().st_size for p in out.iterdir()) / 2**20)
            row["above_input_mb"] = round(row["peak_rss_mb"] - input_mb)
            rows[name] = row
            print(
                f"{name:<24} input {input_mb:.0f} MB, outputs {row['output_mb']} MB, peak RSS "
                f"{row['peak_rss_mb']} MB = input + {row['above_input_mb']} MB, {row['seconds']} s"
            )
    results = {"hardware": hardware(), "args": vars(args), "input_mb": round(input_mb), "runs": rows}
    print(f"results: {save_results(results, 'large_stack_memory')}")


if __name__ == "__main__":
    main()
