"""Does it matter how the student's 112 px view is made? Serving cuts it straight from the photo;
training used to cut a 128 px view (the teacher's) and resize it to 112 in torch (antialiased).

Evaluates one student checkpoint on the 300-W common test set both ways and prints the nme_io of
each. Training now cuts each model's view at its own size (one path, ``distill/tasks.py``).

    python benchmarks/train_serve_crop.py runs/300w_recipe/checkpoints/student.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.tasks import model_input  # noqa: E402
from landmarks.atomic import write_json  # noqa: E402
from landmarks.data import open_dataset  # noqa: E402
from landmarks.data.specs import data_root  # noqa: E402
from landmarks.metrics import compute_metrics  # noqa: E402
from landmarks.models import load_checkpoint  # noqa: E402

TEST = ("300w/helen/testset", "300w/lfpw/testset")


def nme_io(model: torch.nn.Module, meta, data: str, crop_size: int) -> float:
    """nme_io of ``model`` when its input is cut at ``crop_size`` and resized to its own size."""
    dataset = open_dataset(data, input_size=crop_size, crop_scale=meta.crop_scale)
    preds, gts = [], []
    with torch.inference_mode():
        for start in range(0, len(dataset), 64):
            batch = [dataset[i] for i in range(start, min(start + 64, len(dataset)))]
            images = torch.from_numpy(np.stack([b["image"] for b in batch]))
            preds.append(model.forward_landmarks(model_input(images, meta.input_size, meta)).numpy())
            gts.append(np.stack([b["points"] for b in batch]))
    pred, gt = np.concatenate(preds) * meta.input_size, np.concatenate(gts) * meta.input_size
    return float(compute_metrics(pred, gt, meta.input_size)[0].nme_io)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-root", type=Path, default=data_root())
    p.add_argument("--resize-from", type=int, default=128)
    args = p.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build().eval()
    data = ",".join(str(args.data_root / t) for t in TEST)
    direct = nme_io(model, ckpt.metadata, data, ckpt.metadata.input_size)
    resized = nme_io(model, ckpt.metadata, data, args.resize_from)
    result = {"checkpoint": str(args.checkpoint), "direct_crop_nme_io": direct,
              f"crop_{args.resize_from}_resized_nme_io": resized, "relative_difference": (resized - direct) / direct}
    write_json(ROOT / "benchmarks" / "results" / "train_serve_crop.json", result)
    print(f"direct {ckpt.metadata.input_size} px crop: nme_io {direct:.3f} %; {args.resize_from} px crop resized: "
          f"{resized:.3f} % ({100 * result['relative_difference']:+.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
