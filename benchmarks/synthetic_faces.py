"""Benchmark the synthetic-face generator: speed on one core, and whether a CNN can learn it.

1. Generation speed at 128 px, pinned to one CPU core with one OpenCV/torch thread.
2. Learnability: a small CNN trained for a fixed wall-clock budget on freshly generated faces
   (a producer process renders crops while the trainer samples from a replay buffer), then
   ``nme_io`` on held-out seeds against the mean-shape baseline.
3. A contact sheet of 16 faces with their landmarks, for eyeballing.

Results go to ``benchmarks/results/synthetic_faces.{json,md}`` (atomic writes).

    python benchmarks/synthetic_faces.py            # the real run (~4 minutes)
    python benchmarks/synthetic_faces.py --quick    # smoke test (~40 s)
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import queue
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from landmarks.atomic import atomic_path, write_json, write_text  # noqa: E402
from landmarks.coords import crop_face, landmark_box, normalize  # noqa: E402
from landmarks.metrics import compute_metrics  # noqa: E402
from landmarks.schemes import LandmarkScheme  # noqa: E402
from landmarks.synthetic import generate_face  # noqa: E402
from landmarks.synthetic.preview import contact_sheet  # noqa: E402

IMAGE_SIZE = 128
CROP_SCALE = 1.25
TRAIN_SEED_START = 1_000_000  # eval seeds are 0..N-1: disjoint by construction
CHUNK = 32


@dataclass(frozen=True)
class Config:
    quick: bool
    speed_images: int
    train_seconds: float
    eval_faces: int
    input_size: int
    threads: int
    batch_size: int
    buffer_size: int
    lr: float
    out_dir: Path
    sheet: Path | None


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="short smoke run (fewer images, 20 s training)")
    add("--speed-images", type=int, default=None, help="faces timed for speed (default 1000)")
    add("--train-seconds", type=float, default=None, help="training budget (default 180)")
    add("--eval-faces", type=int, default=None, help="held-out faces, seeds 0..N-1 (default 500)")
    add("--input-size", type=int, default=64, help="CNN input side in pixels")
    add("--threads", type=int, default=2,
                        help="CPU threads in all: one renders training faces, the rest train")
    add("--batch-size", type=int, default=64)
    add("--buffer-size", type=int, default=12000, help="replay buffer of training crops")
    add("--lr", type=float, default=3e-3)
    add("--out-dir", type=Path, default=None,
        help="results folder (default benchmarks/results; --quick: runs/synthetic_faces_quick)")
    add("--sheet", type=Path, default=None,
        help="contact sheet JPEG (default docs/img/synthetic_faces.jpg; --quick: in --out-dir)")
    add("--no-sheet", action="store_true", help="skip the contact sheet")
    args = parser.parse_args(argv)
    quick = args.quick
    default_out = ROOT / "runs" / "synthetic_faces_quick" if quick else ROOT / "benchmarks" / "results"
    out_dir = args.out_dir or default_out
    sheet = args.sheet or (out_dir if quick else ROOT / "docs" / "img") / "synthetic_faces.jpg"
    return Config(
        quick=quick,
        speed_images=args.speed_images or (200 if quick else 1000),
        train_seconds=args.train_seconds or (20.0 if quick else 180.0),
        eval_faces=args.eval_faces or (100 if quick else 500),
        input_size=args.input_size,
        threads=max(2, args.threads),
        batch_size=args.batch_size,
        buffer_size=args.buffer_size,
        lr=args.lr,
        out_dir=out_dir,
        sheet=None if args.no_sheet else sheet,
    )


def measure_speed(num_images: int) -> dict[str, float]:
    """Faces per second on one core: wall clock and CPU time (the latter ignores other load)."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        generate_face(0, IMAGE_SIZE)
        wall, cpu = time.perf_counter(), time.process_time()
        for seed in range(num_images):
            generate_face(seed, IMAGE_SIZE)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        os.sched_setaffinity(0, allowed)
    return {
        "images": num_images,
        "image_size": IMAGE_SIZE,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "images_per_s_wall": round(num_images / wall, 1),
        "images_per_s_cpu": round(num_images / cpu, 1),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def face_sample(seed: int, input_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The design-standard crop of one face: (crop uint8, points xy_norm, image points)."""
    face = generate_face(seed, IMAGE_SIZE)
    crop, transform = crop_face(face.image, landmark_box(face.points), CROP_SCALE, input_size)
    return crop, normalize(transform.to_crop(face.points), input_size), face.points


def produce(seed_start: int, input_size: int, out: mp.Queue, stop: mp.Event) -> None:
    """Producer process: render training crops in chunks until told to stop."""
    cv2.setNumThreads(1)
    seed = seed_start
    while not stop.is_set():
        crops, targets = [], []
        for _ in range(CHUNK):
            crop, pts, _ = face_sample(seed, input_size)
            crops.append(crop)
            targets.append(pts)
            seed += 1
        try:
            out.put((np.stack(crops), np.stack(targets).astype(np.float32)), timeout=1.0)
        except queue.Full:
            continue


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallLandmarkNet(nn.Module):
    """Six 3x3 conv layers (four stride-2) and a linear head: ~10 M MACs at 64 px."""

    def __init__(self, input_size: int, num_points: int = 68):
        super().__init__()
        self.num_points = num_points
        self.features = nn.Sequential(
            _conv(3, 24, 2), _conv(24, 32, 2), _conv(32, 32, 1), _conv(32, 64, 2), _conv(64, 64, 1),
            _conv(64, 128, 2),
        )
        side = math.ceil(input_size / 16)
        self.head = nn.Linear(128 * side * side, 2 * num_points)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``xy_norm`` landmarks ``[N, P, 2]`` from uint8-scaled input ``[N, 3, S, S]``."""
        y = self.head(self.features(x).flatten(1))
        return y.view(-1, self.num_points, 2) + 0.5


def to_tensor(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (mean 0.5, std 0.5)."""
    x = torch.as_tensor(crops).permute(0, 3, 1, 2).float()
    return x.div_(127.5).sub_(1.0)


class ReplayBuffer:
    """Fixed-size ring of training crops: generation is slower than training, so samples repeat."""

    def __init__(self, capacity: int, input_size: int):
        self.crops = torch.zeros((capacity, input_size, input_size, 3), dtype=torch.uint8)
        self.points = torch.zeros((capacity, 68, 2), dtype=torch.float32)
        self.capacity, self.size, self.cursor, self.added = capacity, 0, 0, 0
        self.point_sum = np.zeros((68, 2))

    def add(self, crops: np.ndarray, points: np.ndarray) -> None:
        for crop, pts in zip(crops, points, strict=True):
            self.crops[self.cursor] = torch.from_numpy(crop)
            self.points[self.cursor] = torch.from_numpy(pts)
            self.cursor = (self.cursor + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
        self.added += len(crops)
        self.point_sum += points.sum(axis=0)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, self.size, (n,), generator=generator)
        return self.crops[idx], self.points[idx]

    @property
    def mean_shape(self) -> np.ndarray:
        """Mean training target (``xy_norm``): the baseline predictor."""
        return self.point_sum / max(self.added, 1)


def _drain(q: mp.Queue, buffer: ReplayBuffer, block: bool) -> None:
    while True:
        try:
            buffer.add(*q.get(block=block, timeout=5.0 if block else None))
        except queue.Empty:
            return
        block = False


def _flip(crops: torch.Tensor, points: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror half the batch: crop flipped left-right, x -> 1 - x, points re-labelled."""
    half = len(crops) // 2
    crops, points = crops.clone(), points.clone()
    crops[:half] = crops[:half].flip(2)
    flipped = points[:half, perm]
    flipped[..., 0] = 1.0 - flipped[..., 0]
    points[:half] = flipped
    return crops, points


def train(cfg: Config) -> tuple[SmallLandmarkNet, np.ndarray, dict[str, float]]:
    """Train for ``cfg.train_seconds`` of wall clock while a producer renders fresh faces."""
    torch.manual_seed(0)
    torch.set_num_threads(max(1, cfg.threads - 1))
    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(maxsize=16), ctx.Event()
    worker = ctx.Process(target=produce, args=(TRAIN_SEED_START, cfg.input_size, q, stop), daemon=True)
    worker.start()
    buffer = ReplayBuffer(cfg.buffer_size, cfg.input_size)
    model = SmallLandmarkNet(cfg.input_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    perm = torch.as_tensor(LandmarkScheme.IBUG68.flip_permutation)
    gen = torch.Generator().manual_seed(0)
    try:
        while buffer.size < 4 * cfg.batch_size:
            _drain(q, buffer, block=True)
        start, steps, loss_avg = time.perf_counter(), 0, float("nan")
        while (elapsed := time.perf_counter() - start) < cfg.train_seconds:
            _drain(q, buffer, block=False)
            progress = elapsed / cfg.train_seconds
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, progress / 0.03) * 0.5 * (1 + math.cos(math.pi * progress))
            crops, points = _flip(*buffer.sample(cfg.batch_size, gen), perm)
            loss = nn.functional.smooth_l1_loss(model(to_tensor(crops)), points, beta=0.01)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_avg = loss.item() if steps == 0 else 0.98 * loss_avg + 0.02 * loss.item()
            steps += 1
        seconds = time.perf_counter() - start
    finally:
        stop.set()
        worker.join(timeout=10)
        if worker.is_alive():
            worker.terminate()
    stats = {
        "seconds": round(seconds, 1),
        "steps": steps,
        "batch_size": cfg.batch_size,
        "faces_generated": buffer.added,
        "samples_seen": steps * cfg.batch_size,
        "final_loss": round(loss_avg, 5),
        "torch_threads": torch.get_num_threads(),
        "producer_processes": 1,
    }
    return model, buffer.mean_shape, stats


def evaluate(model: SmallLandmarkNet, mean_shape: np.ndarray, cfg: Config) -> dict[str, dict[str, float]]:
    """``nme_io`` etc. on seeds 0..N-1 for the mean-shape baseline and the CNN, in image pixels."""
    crops, gts, transforms = [], [], []
    for seed in range(cfg.eval_faces):
        face = generate_face(seed, IMAGE_SIZE)
        crop, transform = crop_face(face.image, landmark_box(face.points), CROP_SCALE, cfg.input_size)
        crops.append(crop)
        gts.append(face.points)
        transforms.append(transform)
    model.eval()
    with torch.no_grad():
        pred_norm = torch.cat([model(to_tensor(np.stack(crops[i:i + 256])))
                               for i in range(0, len(crops), 256)]).numpy().astype(np.float64)
    size = cfg.input_size
    to_image = lambda norm, t: t.to_image(norm * size)  # noqa: E731
    cnn = np.stack([to_image(p, t) for p, t in zip(pred_norm, transforms, strict=True)])
    base = np.stack([to_image(mean_shape, t) for t in transforms])
    gt = np.stack(gts)
    return {
        name: {k: round(v, 4) for k, v in compute_metrics(pred, gt, IMAGE_SIZE)[0].as_dict().items()}
        for name, pred in (("mean_shape_baseline", base), ("cnn", cnn))
    }


def write_sheet(path: Path) -> None:
    sheet = contact_sheet(range(16), IMAGE_SIZE)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]):
            raise OSError(f"could not write {path}")


def markdown(result: dict) -> str:
    speed, training, ev = result["speed"], result["training"], result["eval"]
    base, cnn = ev["mean_shape_baseline"], ev["cnn"]
    rows = [
        "# Synthetic faces benchmark",
        "",
        f"Generation at {speed['image_size']} px, one core: **{speed['images_per_s_cpu']} images/s** "
        f"per CPU-second ({speed['images_per_s_wall']} images/s wall clock, load average "
        f"{speed['load_avg_1min']} on a shared machine; {speed['images']} faces).",
        "",
        f"Learnability: {cfg_line(result)}; {training['seconds']} s of training, {training['steps']} steps, "
        f"{training['faces_generated']} fresh faces. Eval: {ev['num_faces']} held-out seeds "
        f"(0..{ev['num_faces'] - 1}), normalizer `nme_io` (outer eye corners), NME in percent.",
        "",
        "| predictor | nme_io % | nme_box % | fr@0.10 | auc@0.10 |",
        "|---|---:|---:|---:|---:|",
        f"| mean shape (baseline) | {base['nme_io']:.2f} | {base['nme_box']:.2f} | {base['fr_010']:.3f} "
        f"| {base['auc_010']:.3f} |",
        f"| small CNN | {cnn['nme_io']:.2f} | {cnn['nme_box']:.2f} | {cnn['fr_010']:.3f} "
        f"| {cnn['auc_010']:.3f} |",
        "",
    ]
    return "\n".join(rows)


def cfg_line(result: dict) -> str:
    c = result["config"]
    return f"{c['input_size']} px crops (crop_scale {CROP_SCALE}), {c['threads']} threads"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    print(f"speed: timing {cfg.speed_images} faces on one core ...", flush=True)
    speed = measure_speed(cfg.speed_images)
    print(f"  {speed['images_per_s_cpu']} images/s (CPU time), {speed['images_per_s_wall']} images/s (wall)")
    print(f"training for {cfg.train_seconds:.0f} s ...", flush=True)
    model, mean_shape, training = train(cfg)
    print(f"  {training['steps']} steps, {training['faces_generated']} faces generated")
    cv2.setNumThreads(1)
    ev = evaluate(model, mean_shape, cfg)
    result = {
        "benchmark": "synthetic_faces",
        "quick": cfg.quick,
        "config": {"input_size": cfg.input_size, "crop_scale": CROP_SCALE, "threads": cfg.threads,
                   "train_seconds": cfg.train_seconds, "lr": cfg.lr, "buffer_size": cfg.buffer_size},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "opencv": cv2.__version__, "numpy": np.__version__, "cpus": os.cpu_count()},
        "speed": speed,
        "training": training,
        "eval": {"num_faces": cfg.eval_faces, "seeds": f"0..{cfg.eval_faces - 1}",
                 "train_seeds_from": TRAIN_SEED_START, "normalizer": "nme_io", **ev},
    }
    print(f"  nme_io: baseline {ev['mean_shape_baseline']['nme_io']:.2f} %, cnn {ev['cnn']['nme_io']:.2f} %")
    write_json(cfg.out_dir / "synthetic_faces.json", result)
    write_text(cfg.out_dir / "synthetic_faces.md", markdown(result))
    if cfg.sheet is not None:
        write_sheet(cfg.sheet)
    print(f"wrote {cfg.out_dir}/synthetic_faces.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
