"""Training and inference speed of the reconstruction U-Net; prints one JSON object.

Measures full training steps (forward, soft Dice loss, backward, Adam step) on binary phantom-like volumes:
training volumes/s, seconds per step and peak memory, for each (resolution, model size, batch, mixed precision,
torch.compile) configuration; and inference seconds per case (preprocess → network → post-process → original
grid) on a phantom case. CPU: 64³ "tiny" and "compact" (notebook 10's network). On a GPU (``--gpu``, default
when CUDA is available): 128³ and 256³, with and without bf16 autocast and compile; the target is a 256³ "paper"
step at batch 2 in under 0.5 s on an H100.

    python benchmarks/train_speed.py            # CPU: 64³ tiny and compact (about a minute), or the GPU set
    python benchmarks/train_speed.py --quick    # fewer steps
    python benchmarks/train_speed.py --json docs/benchmarks   # also write its record (benchmarks/report.py)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from report import describe_machine, make_record, table, write_record

from cranialkit.config import device as pick_device
from cranialkit.config import supports_autocast
from cranialkit.reconstruction.inference import Reconstructor, autocast_context
from cranialkit.reconstruction.losses import soft_dice_loss
from cranialkit.reconstruction.network import ModelConfig, build_network, count_parameters


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _shell_batch(batch: int, side: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Hollow balls with a cap removed: a cheap stand-in for skulls with the same sparsity."""
    axis = torch.linspace(-1, 1, side, device=dev)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    r = torch.sqrt(x**2 + y**2 + z**2)
    shell = (r < 0.85) & (r > 0.78)
    cap = shell & (z > 0.5)
    defective = (shell & ~cap).float()[None, None].repeat(batch, 1, 1, 1, 1)
    implant = cap.float()[None, None].repeat(batch, 1, 1, 1, 1)
    return defective, implant


def time_training(dev, side, size, batch, amp, compile_, steps, warmup) -> dict:
    """Seconds per full training step and peak memory for one configuration."""
    record = {"resolution": side, "size": size, "batch": batch, "amp": amp, "compile": compile_}
    model = build_network(size).to(dev)
    record["parameters_M"] = round(count_parameters(model) / 1e6, 2)
    net = torch.compile(model) if compile_ else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    use_fp16 = amp and dev.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda" if dev.type == "cuda" else "cpu", enabled=use_fp16)
    defective, implant = _shell_batch(batch, side, dev)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)

    def step() -> None:
        with autocast_context(dev, amp):
            logits = net(defective)
        loss = soft_dice_loss(logits, implant)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    try:
        started = time.perf_counter()
        for _ in range(warmup):
            step()
        _sync(dev)
        record["warmup_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(dev)
        seconds = (time.perf_counter() - started) / steps
    except torch.OutOfMemoryError:
        record["error"] = "out of memory"
        return record
    record["seconds_per_step"] = round(seconds, 4)
    record["volumes_per_s"] = round(batch / seconds, 2)
    if dev.type == "cuda":
        record["peak_memory_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    else:
        record["peak_rss_GiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return record


def time_inference(dev, side, size, repeats) -> dict:
    """Seconds per case: a phantom defective skull on a grid 1.25× finer than the network's → implant there."""
    from cranialkit.data.phantom import make_defect, make_skull

    defective, _ = make_defect(make_skull(1, shape=(side + side // 4,) * 3), "parietotemporal", seed=1)
    config = ModelConfig(size, "implant", (side,) * 3)
    reconstructor = Reconstructor(build_network(size), config, device=dev, postprocess=True)
    reconstructor.reconstruct(defective)  # warm-up
    _sync(dev)
    started = time.perf_counter()
    for _ in range(repeats):
        reconstructor.reconstruct(defective)
    _sync(dev)
    return {"resolution": side, "size": size, "case_shape": list(defective.shape),
            "seconds_per_case": round((time.perf_counter() - started) / repeats, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--gpu", action="store_true", help="the GPU set (128³, 256³; default when CUDA is used)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--time-limit", type=float, default=None, help="start no new configuration after this (s)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as a benchmark record here (docs/benchmarks/<name>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    gpu = args.gpu or dev.type == "cuda"
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    steps = args.steps or (3 if args.quick else (10 if gpu else 5))
    if gpu:
        configs = [  # the most telling first: --time-limit may skip the last ones
            (256, "paper", 2, True, False),
            (256, "paper", 2, False, False),
            (128, "small", 2, False, False),
            (128, "small", 2, True, False),
            (128, "paper", 2, True, False),
            (64, "tiny", 8, False, False),
            (128, "small", 2, True, True),
            (256, "paper", 2, True, True),
        ]
        inference = [(128, "small"), (256, "paper")]
    else:
        configs = [(64, "tiny", 2, False, False), (64, "compact", 2, False, False)]
        inference = [(64, "compact")]
    amp_ok = supports_autocast(dev)
    started = time.perf_counter()
    training, skipped = [], []
    for side, size, batch, amp, compile_ in configs:
        if (amp and not amp_ok) or (compile_ and dev.type != "cuda"):
            continue
        if args.time_limit is not None and time.perf_counter() - started > args.time_limit:
            skipped.append({"resolution": side, "size": size, "batch": batch, "amp": amp, "compile": compile_})
            continue
        training.append(time_training(dev, side, size, batch, amp, compile_, steps, 3 if compile_ else 1))
    result = {
        "benchmark": "train_speed",
        "measured": "full training step (forward + soft Dice + backward + Adam) and inference per case",
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "timed_steps": steps,
        "training": training,
        "skipped_for_time": skipped,
        "inference": [time_inference(dev, side, size, 2 if args.quick else 3) for side, size in inference],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        rows = [[f"{r['resolution']}³", f"{r['size']} ({r['parameters_M']} M)", r["batch"],
                 "bf16/fp16" if r["amp"] else "fp32", "yes" if r["compile"] else "no", r.get("seconds_per_step"),
                 r.get("volumes_per_s"), r.get("peak_memory_GiB", r.get("peak_rss_GiB")), r.get("error")]
                for r in training]
        inference_rows = [[f"{r['resolution']}³", r["size"], "×".join(map(str, r["case_shape"])),
                           r["seconds_per_case"]] for r in result["inference"]]
        name = "train_speed_gpu" if dev.type == "cuda" else "train_speed_cpu"
        write_record(args.json, make_record(
            name, f"Reconstruction training step on {'a GPU' if dev.type == 'cuda' else 'the CPU'}",
            [table(f"Full training steps (forward, soft Dice, backward, Adam) on binary shells, {steps} timed steps",
                   ["grid", "network (parameters)", "batch", "precision", "compile", "s / step",
                    "training volumes/s", "peak memory (GiB)", "error"], rows),
             table("Inference per case (untrained network; grid → network → post-processing → original grid)",
                   ["grid", "network", "case shape", "s / case"], inference_rows)],
            threads=torch.get_num_threads(), device=describe_machine(dev), results=result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
