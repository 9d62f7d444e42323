"""The training loop shared by teacher and student: resumable, deterministic, DDP-ready.

A *task* (teacher heatmap training, student distillation) supplies the modules to train, a
loss for a batch, and a validation function; the engine owns everything else: data order,
learning-rate schedule, progress bar, per-epoch log, state checkpoints, Ctrl-C, and
DistributedDataParallel when launched under ``torchrun``.

Resuming is exact: data order and augmentation are pure functions of (seed, epoch, index),
the learning rate is a pure function of the step, and the state file holds the weights, the
optimizer and the position inside the epoch.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from distill.config import TrainConfig
from landmarks.atomic import write_bytes, write_json, write_text
from landmarks.errors import ConfigError, ModelError


class TrainingTask(Protocol):
    """What the engine needs from a task; ``modules`` are trained and checkpointed."""

    modules: nn.ModuleDict

    def loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Loss terms for a batch; the ``total`` entry is back-propagated."""

    def validate(self, modules: nn.ModuleDict) -> dict[str, float]:
        """Validation metrics (``nme_io`` in percent at least) of ``modules`` (the trained ones
        or their weight average), computed on rank 0."""


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``TrainConfig.precision`` on ``device`` (None = plain fp32)."""
    if name == "fp32":
        return None
    supported = device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if name == "bf16" and not supported:
        raise ConfigError("precision bf16 asked for, but this CPU has no bf16 support (use fp32 or auto)")
    return torch.bfloat16 if supported else None


class WeightAverage:
    """Exponential moving average of a module's weights and buffers (timm's ModelEmaV2 idea).

    The decay ramps up as ``(1 + n) / (10 + n)`` over the first updates so the average is not
    dominated by the random initialization; integer buffers are copied.
    """

    def __init__(self, modules: nn.Module, decay: float) -> None:
        import copy

        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(modules).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, modules: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged, current = self.module.state_dict(), modules.state_dict()
        floats = [k for k, v in averaged.items() if v.dtype.is_floating_point]
        torch._foreach_lerp_([averaged[k] for k in floats], [current[k] for k in floats], 1.0 - decay)
        for key, value in averaged.items():
            if not value.dtype.is_floating_point:
                value.copy_(current[key])

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a ``torchrun`` job (world of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environ(cls) -> DistEnv:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )


def resolve_device(name: str, env: DistEnv) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
        return torch.device("cuda", env.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(env: DistEnv, device: torch.device) -> None:
    if env.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up then cosine decay to 1 % of ``base_lr``; a pure function of the step."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class _ListSampler(Sampler[int]):
    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = list(indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    seconds: float
    images_per_s: float
    losses: dict[str, float]
    val: dict[str, float]

    def row(self) -> dict[str, float]:
        return {
            "epoch": self.epoch,
            "lr": self.lr,
            "seconds": round(self.seconds, 2),
            "images_per_s": round(self.images_per_s, 1),
            **{f"loss_{k}": v for k, v in self.losses.items()},
            **{f"val_{k}": v for k, v in self.val.items()},
        }


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    weight_checksums: list[str] = field(default_factory=list)


class _LossModule(nn.Module):
    """Puts the task's loss behind ``forward`` so DDP can hook the trained parameters."""

    def __init__(self, task: TrainingTask) -> None:
        super().__init__()
        self.trained = task.modules
        self._task = (task,)  # a tuple, so the task itself is not registered as a submodule

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self._task[0].loss(batch)


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step and stops."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave handlers alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Runs a :class:`TrainingTask` for ``cfg.epochs`` epochs with state in ``run_dir``."""

    def __init__(
        self,
        name: str,
        task: TrainingTask,
        dataset: Dataset,
        cfg: TrainConfig,
        run_dir: Path,
        *,
        seed: int = 0,
        device: torch.device | None = None,
        env: DistEnv | None = None,
        num_workers: int = 0,
        progress: bool = True,
        on_epoch_end: Callable[[EpochRecord], None] | None = None,
    ) -> None:
        self.name = name
        self.task = task
        self.dataset = dataset
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.device = device or torch.device("cpu")
        self.env = env or DistEnv()
        self.num_workers = num_workers
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.state_path = self.run_dir / f"{name}.state.pt"
        self.log_path = self.run_dir / f"{name}_log.csv"
        self.autocast_dtype = resolve_precision(cfg.precision, self.device)
        if cfg.channels_last:
            task.modules.to(memory_format=torch.channels_last)
        params = [p for p in task.modules.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sampler = DistributedSampler(
            dataset,
            num_replicas=self.env.world_size,
            rank=self.env.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.steps_per_epoch = max(1, len(self.sampler) // cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup_steps = min(self.total_steps // 2, self.steps_per_epoch * cfg.warmup_epochs)
        self.train_modules: nn.Module = _LossModule(task)
        if self.env.world_size > 1:
            self.train_modules = nn.parallel.DistributedDataParallel(self.train_modules)
        self.average = WeightAverage(task.modules, cfg.ema_decay) if cfg.ema_decay > 0 else None

    @property
    def final_modules(self) -> nn.ModuleDict:
        """What training produced: the weight average when there is one, else the weights."""
        return self.average.module if self.average is not None else self.task.modules

    # -- state ---------------------------------------------------------------------------
    def _save_state(self, epoch: int, step_in_epoch: int, history: list[EpochRecord]) -> None:
        if not self.env.is_main:
            return
        payload = {
            "modules": self.task.modules.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "history": [vars(r) for r in history],
            "torch_rng": torch.get_rng_state(),
            "average": self.average.state_dict() if self.average is not None else None,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        write_bytes(self.state_path, buffer.getvalue())

    def _load_state(self) -> tuple[int, int, list[EpochRecord]]:
        try:
            payload = torch.load(self.state_path, map_location=self.device, weights_only=True)
        except Exception as err:  # reads only the state file; a corrupt one fails in many ways
            raise ModelError(f"{self.state_path}: cannot resume from this state file ({err})") from err
        try:
            self.task.modules.load_state_dict(payload["modules"])
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.average is not None:
                if payload.get("average") is None:
                    raise ValueError("it was saved without a weight average; resume with the same ema_decay")
                self.average.load_state_dict(payload["average"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            # a state file of another model, optimizer or weight average: one clear line for the user
            raise ModelError(f"{self.state_path}: cannot resume from this state file ({err})") from err
        torch.set_rng_state(payload["torch_rng"].cpu())
        history = [EpochRecord(**r) for r in payload["history"]]
        return int(payload["epoch"]), int(payload["step_in_epoch"]), history

    def has_state(self) -> bool:
        return self.state_path.is_file()

    # -- loop ----------------------------------------------------------------------------
    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        indices = list(self.sampler)[skip_batches * self.cfg.batch_size :]
        return DataLoader(
            self.dataset,
            batch_size=self.cfg.batch_size,
            sampler=_ListSampler(indices),
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=False,
        )

    def fit(self, resume: bool = False) -> TrainResult:
        start_epoch, skip, history = 0, 0, []
        if resume:
            start_epoch, skip, history = self._load_state()
        started = time.perf_counter()
        with _StopFlag() as stop:
            for epoch in range(start_epoch, self.cfg.epochs):
                record = self._run_epoch(epoch, skip, stop, history)
                skip = 0
                history.append(record)
                self._save_state(epoch + 1, 0, history)
                self._write_log(history)
                if self.env.is_main:
                    self._print_epoch(record, time.perf_counter() - started, epoch + 1 - start_epoch)
                if self.on_epoch_end is not None and self.env.is_main:
                    self.on_epoch_end(record)
            if stop.raised:  # a signal during the last validation: the state is saved, stop here
                raise KeyboardInterrupt
        result = TrainResult(history=history, seconds=time.perf_counter() - started)
        result.weight_checksums = self._gather_checksums()
        return result

    def _run_epoch(self, epoch: int, skip: int, stop: _StopFlag, history: list[EpochRecord]) -> EpochRecord:
        from tqdm import tqdm

        self.train_modules.train()
        totals: dict[str, float] = {}
        seen, started = 0, time.perf_counter()
        loader = self._loader(epoch, skip)
        bar = tqdm(
            loader,
            total=self.steps_per_epoch,
            initial=skip,
            desc=f"{self.name} {epoch + 1}/{self.cfg.epochs}",
            disable=not (self.progress and self.env.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        lr = self.cfg.lr
        for step_in_epoch, batch in enumerate(bar, start=skip):
            if stop.raised:
                self._save_state(epoch, step_in_epoch, history)
                raise KeyboardInterrupt
            lr = lr_at(epoch * self.steps_per_epoch + step_in_epoch, self.total_steps, self.warmup_steps, self.cfg.lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):
                losses = self.train_modules(batch)
            self.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            self.optimizer.step()
            if self.average is not None:
                self.average.update(self.task.modules)
            n = len(batch["image"])
            seen += n
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) * n
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.4f}", lr=f"{lr:.1e}")
        if stop.raised:
            self._save_state(epoch, self.steps_per_epoch, history)
            raise KeyboardInterrupt
        seconds = time.perf_counter() - started
        self._sync_buffers()
        self.train_modules.eval()
        val = self.task.validate(self.final_modules) if self.env.is_main else {}
        return EpochRecord(
            epoch=epoch + 1,
            lr=lr,
            seconds=seconds,
            images_per_s=seen * self.env.world_size / max(seconds, 1e-9),
            losses={k: v / max(seen, 1) for k, v in totals.items()},
            val=val,
        )

    def _print_epoch(self, record: EpochRecord, elapsed: float, epochs_done: int) -> None:
        """One line per epoch, so a log file or CI shows the run advancing without a terminal."""
        left = (self.cfg.epochs - record.epoch) * elapsed / max(epochs_done, 1)
        val = record.val.get("nme_io")
        parts = [
            f"[{self.name}] epoch {record.epoch}/{self.cfg.epochs}",
            f"loss {record.losses.get('total', float('nan')):.4f}",
            f"val nme_io {val:.2f}%" if val is not None else "",
            f"{record.images_per_s:.0f} img/s",
            f"{record.seconds:.0f}s",
            f"ETA {_duration(left)}",
        ]
        print("  ".join(p for p in parts if p), flush=True)

    def _sync_buffers(self) -> None:
        """Batch-norm running statistics are updated per rank; take rank 0's everywhere so
        every rank holds (and checkpoints) the same model."""
        if self.env.world_size > 1 and dist.is_initialized():
            for buffer in self.task.modules.buffers():
                dist.broadcast(buffer.data, src=0)

    def _write_log(self, history: list[EpochRecord]) -> None:
        if not self.env.is_main:
            return
        rows = [r.row() for r in history]
        fieldnames: list[str] = []
        for row in rows:
            fieldnames += [k for k in row if k not in fieldnames]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.log_path, buffer.getvalue())
        write_json(self.log_path.with_suffix(".json"), rows)

    def _gather_checksums(self) -> list[str]:
        """sha256 of this rank's weights, gathered from every rank (identical under DDP)."""
        digest = hashlib.sha256()
        for key, tensor in sorted(self.task.modules.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        mine = digest.hexdigest()
        if self.env.world_size == 1 or not dist.is_initialized():
            return [mine]
        gathered: list[str] = [""] * self.env.world_size
        dist.all_gather_object(gathered, mine)
        return gathered
