"""Our tiled prediction against MONAI's ``sliding_window_inference``, in one run.

Same network weights, same input, same tile size, overlap and gaussian blending. For
each overlap it times:

* ``monai fp32``: MONAI's default path (NCHW, float32) - the reference for ratios
  and for argmax agreement;
* ``monai levers``: MONAI given the precision levers we use on this device
  (channels-last, and bf16/fp16 autocast where ``precision='auto'`` picks it);
* ``ours, MONAI grid``: ``predict_tiled`` in fp32 with MONAI's window grid (no
  mirror margin): the correctness oracle, it must equal MONAI to 1e-4;
* ``ours``: ``predict_tiled`` as users get it at the same tile size and overlap
  (mirror-padded borders, BatchNorm folded, channels-last, auto precision);
* ``ours, big tiles``: the same with the inference tile of ``--big-tiles`` pixels and
  the same overlap in pixels (fewer windows, less recomputed context).

It also times the GUI's live preview: one 512x512 slice with the default model and
the default prediction settings.

    pip install --no-deps monai      # the benchmark only, not a runtime dependency
    python benchmarks/prediction_speed.py [--size 1024] [--tile 256] [--big-tiles 512 1024]

Peak RSS is sampled from /proc every 2 ms during each call (the growth above the RSS
before the call).
"""

from __future__ import annotations

import argparse
import copy
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402

from napari_unetseg.core.config import ModelSpec, PredictConfig  # noqa: E402
from napari_unetseg.core.device import autocast, resolve_device, resolve_precision  # noqa: E402
from napari_unetseg.core.models import build_model  # noqa: E402
from napari_unetseg.core.normalization import Normalization  # noqa: E402
from napari_unetseg.core.prediction import predict_tiled  # noqa: E402


class PeakRSS:
    """Context manager sampling this process's RSS; ``.growth_mb`` after exit."""

    def __enter__(self):
        self._stop = threading.Event()
        self.base = self.peak = _rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.growth_mb = (self.peak - self.base) / 2**20


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * 4096


def load_image(size: int) -> tuple[np.ndarray, str]:
    """A (1, size, size) normalised image: ISBI EM slices tiled side by side, else synthetic."""
    path = DATA / "isbi2012_em_membranes" / "images.tif"
    if path.exists():
        import tifffile

        stack = tifffile.imread(path)
        side = stack.shape[-1]
        n = -(-size // side)
        rows = [np.concatenate(list(stack[r * n : (r + 1) * n]), axis=1) for r in range(n)]
        image = np.concatenate(rows, axis=0)[:size, :size]
        source = f"ISBI 2012 EM slices tiled to {size}x{size}"
    else:
        from napari_unetseg.core.sample import make_sample

        image = make_sample(n_slices=1, size=size).image[0]
        source = f"synthetic sample {size}x{size}"
    image = image[None, None].astype(np.float32)
    lo, hi = Normalization().percentiles(image)
    return Normalization.apply(image[0], lo, hi), source


def make_model(
    spec: ModelSpec, image: np.ndarray, model_path: str | None, train_steps: int
) -> torch.nn.Module:
    """The network to time: a model file's, one trained for ``train_steps`` on the ISBI
    dense labels (so that argmax agreement means something), or seeded weights whose
    BatchNorm statistics are set on the image."""
    if model_path:
        from napari_unetseg.core.checkpoint import load_model

        return load_model(model_path, torch.device("cpu")).model.eval()
    labels_path = DATA / "isbi2012_em_membranes" / "labels.tif"
    if train_steps and labels_path.exists():
        import tifffile

        from napari_unetseg.core.config import TrainConfig
        from napari_unetseg.core.training import train

        images = tifffile.imread(labels_path.with_name("images.tif"))[:24]
        labels = tifffile.imread(labels_path)[:24]
        config = TrainConfig(label_mode="dense", steps=train_steps, patch_size=128, batch_size=8, seed=0)
        return train([images[:, None]], [labels], spec, config).loaded.model.eval()
    torch.manual_seed(0)
    model = build_model(spec)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # running stats = plain average over the calibration passes
    model.train()
    with torch.no_grad():
        x = torch.from_numpy(image)[None]
        for top in range(0, image.shape[1] - 255, 256):
            model(x[..., top : top + 256, :256])
    return model.eval()


def timed(fn, repeats: int):
    """Best time of ``repeats`` calls (this machine is shared and noisy), the largest RSS growth."""
    best, growth = float("inf"), 0.0
    for _ in range(repeats):
        with PeakRSS() as rss:
            start = time.perf_counter()
            scores = fn()
            best = min(best, time.perf_counter() - start)
        growth = max(growth, rss.growth_mb)
    return scores, best, growth


def monai_run(model, image, tile, overlap, batch, levers: bool, device: torch.device):
    from monai.inferers import sliding_window_inference

    # MONAI's default path is plain NCHW (a trained model of ours comes back channels-last)
    net = copy.deepcopy(model).to(device).eval().to(memory_format=torch.contiguous_format)
    x = torch.from_numpy(image)[None].to(device)
    dtype = None
    if levers:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        dtype = resolve_precision("auto", device)

    def run():
        with torch.inference_mode(), autocast(device, dtype):
            out = sliding_window_inference(
                x, (tile, tile), batch, net, overlap=overlap, mode="gaussian", sigma_scale=0.125
            )
        return out[0].float().cpu().numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="image side (default 1024)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--big-tiles", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--overlaps", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--batch-size", type=int, default=4, help="tile batch, the same for all")
    parser.add_argument("--base", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--model", help="a model file to use instead of training one")
    parser.add_argument(
        "--train-steps",
        type=int,
        default=150,
        help="train the timed U-Net this long on ISBI dense labels (0: seeded weights)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="report the best of this many calls")
    args = parser.parse_args()

    device = resolve_device(args.device)
    image, source = load_image(args.size)
    spec = ModelSpec(depth=args.depth, base_channels=args.base)
    model = make_model(spec, image, args.model, args.train_steps)
    mpix = image.shape[1] * image.shape[2] / 1e6
    precision = resolve_precision("auto", device)
    print(f"# {hardware()}")
    print(
        f"# {source}; U-Net base {args.base} depth {args.depth}; tile batch {args.batch_size}; "
        f"auto precision here: {precision or 'fp32'}"
    )
    predict_tiled(model, image[:, :256, :256], 256, 0.0, device=device)  # warm-up (oneDNN kernels)

    rows = []
    for overlap in args.overlaps:
        monai = partial(monai_run, model, image, args.tile, overlap, args.batch_size, device=device)
        ref, ref_s, ref_mb = timed(monai(levers=False), args.repeats)
        ref_argmax = ref.argmax(0)
        ov_px = round(overlap * args.tile)
        common = {"batch_size": args.batch_size, "device": device}
        runs = {
            "monai fp32": None,
            "monai levers": monai(levers=True),
            "ours, MONAI grid (fp32)": partial(
                predict_tiled, model, image, args.tile, overlap, precision="fp32", border="constant", **common
            ),
            "ours": partial(predict_tiled, model, image, args.tile, overlap, **common),
        }
        for big in args.big_tiles:  # the same overlap in pixels
            runs[f"ours, {big}-px tiles"] = partial(predict_tiled, model, image, big, ov_px / big, **common)
        for name, fn in runs.items():
            if fn is None:
                scores, seconds, growth = ref, ref_s, ref_mb
            else:
                scores, seconds, growth = timed(fn, args.repeats)
            rel = float(np.abs(scores - ref).max() / np.abs(ref).max())
            row = {
                "overlap": overlap,
                "run": name,
                "seconds": round(seconds, 2),
                "mpix_per_s": round(mpix / seconds, 3),
                "speedup_vs_monai_fp32": round(ref_s / seconds, 2),
                "peak_rss_growth_mb": round(growth),
                "argmax_agreement": float(np.mean(scores.argmax(0) == ref_argmax)),
                "max_rel_diff": rel,
            }
            rows.append(row)
            print(
                f"overlap {overlap:<4} {name:<26} {seconds:7.2f} s {row['mpix_per_s']:6.3f} MPix/s "
                f"x{row['speedup_vs_monai_fp32']:<5} RSS +{row['peak_rss_growth_mb']:>5} MB  "
                f"agree {row['argmax_agreement']:.5f}  max rel diff {rel:.1e}",
                flush=True,
            )

    # The GUI's live preview: one 512x512 slice, default prediction settings, the default
    # model of the Train dock (base 16) and of the CLI (base 32).
    config = PredictConfig()
    view = image[:, :512, :512]
    preview = {"tile_size": config.tile_size, "overlap": config.overlap}
    for base in (16, 32):
        net = make_model(ModelSpec(base_channels=base), image, None, 0)
        times = [
            timed(
                partial(
                    predict_tiled,
                    net,
                    view,
                    config.tile_size,
                    config.overlap,
                    batch_size=config.batch_size,
                    device=device,
                ),
                args.repeats,
            )[1]
            for _ in range(3)
        ]
        preview[f"base{base}_seconds"] = round(float(np.median(times)), 3)  # median of 3 best-ofs
        print(
            f"512x512 preview, U-Net base {base}, default settings: {preview[f'base{base}_seconds']} s "
            "(median of 3)"
        )
    path = save_results(
        {"hardware": hardware(), "source": source, "args": vars(args), "rows": rows, "preview": preview},
        "prediction_speed",
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
