"""Training steps per second, and what the data pipeline costs.

Two loops over the same Trainer (default model and patch size unless told otherwise):

* ``full step``: what training does - sample a batch of patches near the labels,
  flip/rot90 and intensity augmentation on the training device, forward, loss,
  backward, optimizer step;
* ``pre-made batch``: the same step fed one batch of tensors made beforehand (the
  sampler bypassed): the speed the step would have with free data.

Their ratio is the share of time spent on data. On a GPU it says whether the step
loop waits on data.

    python benchmarks/training_throughput.py [--steps 20] [--base 32] [--patch 128] [--batch 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, save_results  # noqa: E402

from napari_unetseg.core.config import ModelSpec, TrainConfig  # noqa: E402
from napari_unetseg.core.sample import make_sample  # noqa: E402
from napari_unetseg.core.training import Trainer  # noqa: E402


def steps_per_second(trainer: Trainer, steps: int) -> float:
    trainer._train_step()  # warm-up (kernel selection, allocator)
    if trainer.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer._train_step()
    if trainer.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--base", type=int, default=32)  # the documented figure's width
    parser.add_argument("--depth", type=int, default=ModelSpec().depth)
    parser.add_argument("--patch", type=int, default=TrainConfig().patch_size)
    parser.add_argument("--batch", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    sample = make_sample(n_slices=8, size=512, painted_slices=4)
    config = TrainConfig(patch_size=args.patch, batch_size=args.batch, device=args.device, steps=10**6)
    spec = ModelSpec(base_channels=args.base, depth=args.depth)
    trainer = Trainer([sample.image[:, None]], [sample.strokes], spec, config)
    full = steps_per_second(trainer, args.steps)
    batch = trainer.sampler.sample(args.batch)
    trainer.sampler.sample = lambda size: batch  # the data path bypassed
    premade = steps_per_second(trainer, args.steps)
    pixels = args.batch * args.patch**2 / 1e6
    print(f"# {hardware()}")
    print(
        f"# U-Net base {args.base} depth {args.depth}, {args.batch} patches of {args.patch} px, "
        f"{trainer.device}"
    )
    print(f"full step       {full:6.2f} steps/s  {full * pixels:6.2f} MPix/s")
    print(f"pre-made batch  {premade:6.2f} steps/s  {premade * pixels:6.2f} MPix/s")
    print(f"data share of the step: {max(0.0, 1 - full / premade):.1%}")
    results = {
        "hardware": hardware(),
        "args": vars(args),
        "full_steps_per_s": full,
        "premade_steps_per_s": premade,
    }
    print(f"results: {save_results(results, 'training_throughput')}")


if __name__ == "__main__":
    main()
