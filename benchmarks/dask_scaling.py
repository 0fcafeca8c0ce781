"""Block-wise prediction on dask against the single process, on one large OME-Zarr image.

Builds mosaics of S-BSST265 fluorescence nuclei (1024 x 1280 images side by side) at 1x,
4x and 16x the pixels of a 2 x 2 mosaic, writes each as OME-Zarr, trains a U-Net (the CLI
defaults, dense nucleus masks of the training split, ``--steps`` steps), then predicts every
mosaic with ``unetseg predict`` in one process and with ``--dask local:1`` and
``local:2``, all with the default tile and block sizes. Reports per run: wall time,
peak memory (the single process's RSS; each dask worker's peak RSS), the blocks and their
mean time, and whether the labels equal the single process's. Also times the scheduler's
own cost per task (empty tasks on the same LocalCluster).

    python benchmarks/dask_scaling.py [--scales 1 4 16] [--steps 100] [--folder /tmp/dask_scaling]

The numbers go in docs/benchmarks.md (with the machine); the extrapolation to a 1 TB stack
on 100 workers there is arithmetic on them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402


def mosaic(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``rows x cols`` images side by side (reused in turn when there are fewer)."""
    h, w = images.shape[1:3]
    out = np.zeros((rows * h, cols * w), images.dtype)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = images[k % len(images)]
    return out


def write_ome_zarr(path: Path, image: np.ndarray) -> None:
    import zarr
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(path), mode="w")
    write_image(image, group, axes="yx", scale_factors=(2,), storage_options={"chunks": (1024, 1024)})


def train_model(folder: Path, steps: int) -> Path:
    import json

    import tifffile

    source = DATA / "sbsst265_1024x1280"
    meta = json.loads((source / "meta.json").read_text())
    train = meta["train_idx"][:8]
    images = tifffile.imread(source / "images.tif")[train]
    masks = (tifffile.imread(source / "labels.tif")[train] > 0).astype(
        np.uint8
    ) + 1  # 1 background, 2 nucleus
    tifffile.imwrite(folder / "train_images.tif", images, metadata={"axes": "ZYX"}, photometric="minisblack")
    tifffile.imwrite(folder / "train_masks.tif", masks, metadata={"axes": "ZYX"}, photometric="minisblack")
    run = folder / "run"
    if not (run / "model.pt").exists():
        command = [
            sys.executable,
            "-m",
            "napari_unetseg",
            "train",
            "--images",
            str(folder / "train_images.tif"),
        ]
        command += [
            "--labels",
            str(folder / "train_masks.tif"),
            "--dense",
            "--steps",
            str(steps),
            "--out",
            str(run),
        ]
        subprocess.run(command, check=True)
    return run / "model.pt"


def single_process(model: Path, store: Path, out: Path) -> dict:
    """The single process: its time in this (warm) process, and its peak memory as a fresh
    ``unetseg predict`` process (the time of that run includes Python's start and imports)."""
    from napari_unetseg.core.file_prediction import predict_files

    start = time.perf_counter()
    predict_files(model, [store], out)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    args = ["predict", "--model", str(model), "--out", str(out.with_name(out.name + "_cli")), str(store)]
    report = (  # the child's own peak (a child's ru_maxrss would count this process's memory too)
        "import sys; from napari_unetseg.cli import main; "
        "from napari_unetseg.core.block_tasks import peak_memory; "
        f"code = main({args!r}); print('PEAK', peak_memory()); sys.exit(code)"
    )
    proc = subprocess.run([sys.executable, "-c", report], check=True, capture_output=True, text=True)
    cli_seconds = time.perf_counter() - start
    peak = int(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PEAK")))
    return {
        "seconds": round(seconds, 2),
        "cli_seconds": round(cli_seconds, 2),
        "peak_rss_mb": round(peak / 2**20),
    }


def with_dask(model: Path, store: Path, out: Path, workers: int, block_size: int | None = None) -> dict:
    """A ``--dask local:N`` run in this process: wall time (cluster start included), blocks,
    their mean and summed task time, each worker's peak memory."""
    from napari_unetseg.core.config import PredictConfig
    from napari_unetseg.core.events import BlockProgress
    from napari_unetseg.core.file_prediction import predict_files

    events: list[BlockProgress] = []
    config = PredictConfig(block_size=block_size) if block_size else PredictConfig()
    start = time.perf_counter()
    predict_files(model, [store], out, config, dask=f"local:{workers}", on_event=events.append)
    seconds = time.perf_counter() - start
    blocks = [e for e in events if isinstance(e, BlockProgress) and e.worker]
    peaks: dict[int, int] = {}
    for event in blocks:
        peaks[event.worker] = max(peaks.get(event.worker, 0), event.peak_bytes)
    return {
        "seconds": round(seconds, 2),
        "blocks": len(blocks),
        "block_mean_s": round(float(np.mean([e.seconds for e in blocks])), 2),
        "block_sum_s": round(float(np.sum([e.seconds for e in blocks])), 2),
        "worker_peak_rss_mb": sorted(round(p / 2**20) for p in peaks.values()),
    }


def scheduler_cost(tasks: int = 2000) -> float:
    """Seconds per empty task, submitted and gathered on a local:2 cluster."""
    from napari_unetseg.core.distributed import connect

    with connect("local:2") as client:
        client.gather(client.map(abs, range(100)))  # warm up
        start = time.perf_counter()
        client.gather(client.map(abs, range(1, tasks + 1)))
        return (time.perf_counter() - start) / tasks


def main() -> None:
    import tifffile

    from napari_unetseg.core.zarr_io import open_zarr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--block-sizes", type=int, nargs="*", default=[2048, 8192], help="also tried on the largest"
    )
    parser.add_argument("--folder", type=Path, default=Path("/tmp/dask_scaling"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    model = train_model(args.folder, args.steps)
    images = tifffile.imread(DATA / "sbsst265_1024x1280" / "images.tif")
    results = {"hardware": hardware(), "scheduler_s_per_task": round(scheduler_cost(), 5), "runs": []}
    print(f"scheduler: {results['scheduler_s_per_task'] * 1000:.2f} ms per empty task", flush=True)
    for scale in args.scales:
        side = int(round(np.sqrt(scale))) * 2  # 1x: 2 x 2 images, 4x: 4 x 4, 16x: 8 x 8
        store = args.folder / f"mosaic_{scale}x.ome.zarr"
        if not store.exists():
            write_ome_zarr(store, mosaic(images, side, side))
        shape = open_zarr(store).data.shape
        row = {"scale": scale, "shape": list(shape), "megapixels": round(shape[0] * shape[1] / 1e6, 1)}
        out = args.folder / f"out_{scale}x"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        if scale == args.scales[0]:  # warm up this process (first convolutions, imports)
            single_process(model, store, out / "warm-up")
        row["single"] = single_process(model, store, out / "single")
        reference = np.asarray(open_zarr(out / "single" / store.name).data)
        runs = [(1, None), (2, None)] + [(2, size) for size in args.block_sizes if scale == args.scales[-1]]
        for workers, block_size in runs:
            name = f"dask_{workers}" + (f"_block{block_size}" if block_size else "")
            run = with_dask(model, store, out / name, workers, block_size)
            labels = np.asarray(open_zarr(out / name / store.name).data)
            run["labels_equal"] = bool(np.array_equal(labels, reference))
            row[name] = run
        print(row, flush=True)
        results["runs"].append(row)
    print(save_results(results, "dask_scaling"))


if __name__ == "__main__":
    main()
