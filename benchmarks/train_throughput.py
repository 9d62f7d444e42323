"""Training throughput, before and after the speed work, side by side in one run.

Each arm trains real steps of the real tasks (teacher heatmaps, student alone, student with KD
from the teacher) through :class:`distill.engine.Trainer`, data loading included, on the same
faces; images/s is the trainer's own measure of its epoch (validation excluded).

* before: images decoded on every view, one crop at the teacher's size resized in torch for
  the student (the old path), fp32, NCHW activations;
* after: images decoded once (:mod:`landmarks.data.cache`), each model's view cut at its own
  size, bf16 autocast where the CPU has it (the student's strided depthwise layers in fp32),
  channels-last activations;
* after, step alone: the after arm's training step on one batch held in memory, stepped again
  and again (no image loaded or augmented): the ceiling of any data-path change, also timed
  for student + KD at larger batches (``--step-batch-sizes``).

    python benchmarks/train_throughput.py --data $LANDMARKS_DATA/300w/helen/trainset --steps 16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.utils.data import Dataset, Subset

from benchmarks.common import cpu_name, save_results
from distill.config import KDConfig, TeacherConfig, TrainConfig
from distill.engine import Trainer
from distill.tasks import StudentTask, TeacherTask
from landmarks.data import AugmentConfig, open_dataset
from landmarks.data.specs import data_root
from landmarks.metadata import ArtifactMetadata
from landmarks.models import create_model

RESULTS = Path(__file__).resolve().parent / "results"
STUDENT_SIZE, TEACHER_SIZE = 112, 128


@dataclass(frozen=True)
class Setting:
    name: str
    cache: bool
    own_views: bool  # each model's view cut at its own size (else: one crop, resized in torch)
    precision: str
    channels_last: bool
    workers: int  # DataLoader worker processes (the old default 1; now 0: loading in the training process)


BEFORE = Setting("before", cache=False, own_views=False, precision="fp32", channels_last=False, workers=1)
AFTER = Setting("after", cache=True, own_views=True, precision="auto", channels_last=True, workers=0)


def _no_validation(_: torch.nn.Module) -> dict[str, float]:
    return {}


def _arm(task_name: str, setting: Setting, data: str) -> tuple[Dataset, TeacherTask | StudentTask]:
    """The dataset and training task of one arm, built as ``setting`` says."""
    torch.manual_seed(0)
    teacher_view = TEACHER_SIZE if (task_name == "student_kd" and setting.own_views) else None
    if task_name == "teacher":
        size = TEACHER_SIZE
    elif setting.own_views or task_name == "student":
        size = STUDENT_SIZE
    else:
        size = TEACHER_SIZE  # the old path: one crop at the larger size, resized for the student
    dataset = open_dataset(data, input_size=size, augment=AugmentConfig(), seed=0, teacher_size=teacher_view,
                           cache_images=setting.cache)
    meta_s = ArtifactMetadata(input_size=STUDENT_SIZE, source="pfld025")
    meta_t = ArtifactMetadata(input_size=TEACHER_SIZE, source="fan1")
    if task_name == "teacher":
        teacher = create_model("fan1", width=64, input_size=TEACHER_SIZE)
        return dataset, TeacherTask(teacher, TeacherConfig(), meta_t, _no_validation)
    teacher = create_model("fan1", width=64, input_size=TEACHER_SIZE).eval() if task_name == "student_kd" else None
    if teacher is not None and setting.channels_last:
        teacher.to(memory_format=torch.channels_last)
    kd = KDConfig(enabled=teacher is not None)
    task = StudentTask(create_model("pfld025", input_size=STUDENT_SIZE), STUDENT_SIZE, meta_s, kd,
                       _no_validation, teacher=teacher, teacher_size=TEACHER_SIZE if teacher else None)
    return dataset, task


def _train_config(setting: Setting, batch: int) -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=batch, lr=1e-3, warmup_epochs=0, precision=setting.precision,
                       channels_last=setting.channels_last)


def measure(task_name: str, setting: Setting, data: str, steps: int, batch: int) -> float:
    """Images/s of one epoch of ``steps`` batches (after one warm-up epoch of 2 batches)."""
    dataset, task = _arm(task_name, setting, data)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_steps in (2, steps):  # warm-up epoch, then the measured one
            subset = Subset(dataset, range(min(len(dataset), n_steps * batch)))
            subset.set_epoch = dataset.set_epoch  # type: ignore[attr-defined]
            trainer = Trainer(task_name, task, subset, _train_config(setting, batch), Path(tmp),
                              num_workers=setting.workers, progress=False)
            results.append(trainer.fit().history[-1].images_per_s)
    return results[-1]


def compute_ceiling(task_name: str, setting: Setting, data: str, steps: int, batch: int) -> float:
    """Images/s of the training step alone: one batch held in memory, stepped ``steps`` times.

    Forward, backward and the optimizer step of the trainer, without loading or augmenting a
    single image: no data-path work can make training faster than this.
    """
    dataset, task = _arm(task_name, setting, data)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task_name, task, dataset, _train_config(setting, batch), Path(tmp), progress=False)
        batch_data = next(iter(trainer._loader(0, 0)))
        trainer.train_modules.train()
        timed = []
        for i in range(2 + steps):  # two warm-up steps
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=trainer.autocast_dtype or torch.float32,
                                enabled=trainer.autocast_dtype is not None):
                losses = trainer.train_modules(batch_data)
            trainer.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            trainer.optimizer.step()
            if i >= 2:
                timed.append(time.perf_counter() - started)
    return batch * len(timed) / sum(timed)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(data_root() / "300w/helen/trainset"), help="training faces to read")
    p.add_argument("--steps", type=int, default=16, help="measured batches per arm")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="alternate before/after this many times (best kept)")
    p.add_argument("--step-batch-sizes", type=int, nargs="*", default=[64, 128],
                   help="also time the student + KD step alone at these batch sizes")
    args = p.parse_args()
    if not Path(args.data).exists():
        print(f"no data at {args.data}; nothing to do")
        return 0
    rows: dict[str, dict[str, float]] = {}
    for task_name in ("teacher", "student", "student_kd"):
        best = {"before": 0.0, "after": 0.0}
        for _ in range(args.repeats):  # interleaved, so machine load hits both settings alike
            for setting in (BEFORE, AFTER):
                ips = measure(task_name, setting, args.data, args.steps, args.batch_size)
                best[setting.name] = max(best[setting.name], ips)
                print(f"{task_name:10s} {setting.name:6s} {ips:7.1f} img/s", flush=True)
            ceiling = compute_ceiling(task_name, AFTER, args.data, args.steps, args.batch_size)
            best["ceiling"] = max(best.get("ceiling", 0.0), ceiling)
            print(f"{task_name:10s} step alone {ceiling:7.1f} img/s", flush=True)
        rows[task_name] = {**best, "speedup": best["after"] / best["before"],
                           "ceiling_speedup": best["ceiling"] / best["before"]}
    by_batch = {b: compute_ceiling("student_kd", AFTER, args.data, args.steps, b) for b in args.step_batch_sizes}
    for b, ips in by_batch.items():
        print(f"student_kd step alone, batch {b}: {ips:7.1f} img/s", flush=True)
    payload = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "images_per_s": rows,
        "student_kd_step_alone_by_batch": by_batch,
        "before": BEFORE.__dict__,
        "after": AFTER.__dict__,
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    lines = [
        "# Training throughput (images/s), before and after, one run",
        "",
        f"{cpu_name()}, {torch.get_num_threads()} torch threads, batch "
        f"{args.batch_size}, {args.steps} measured steps per arm, best of {args.repeats} interleaved repeats.",
        "",
        "| task | before | after | speed-up | after, step alone | its speed-up |",
        "|---|---|---|---|---|---|",
        *[f"| {k} | {v['before']:.1f} | {v['after']:.1f} | x{v['speedup']:.2f} | {v['ceiling']:.1f} "
          f"| x{v['ceiling_speedup']:.2f} |" for k, v in rows.items()],
        "",
        "before: decode every view, one 128 px crop resized in torch for the student, fp32, NCHW, 1 loader worker.",
        "after: images decoded once, each model's view cut at its own size, bf16 autocast (the student's strided "
        "depthwise layers in fp32), channels-last, loading in the training process.",
        "after, step alone: the same training step on one batch held in memory (no image loaded or augmented): "
        "the most any data-path change could give."
        + (" Student + KD step alone at batch " + ", ".join(f"{b}: {v:.1f}" for b, v in by_batch.items())
           + " images/s." if by_batch else ""),
    ]
    save_results(RESULTS, "train_throughput", payload, "\n".join(lines), command=payload["command"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
