"""Evaluates predictors on one eval set for the gate, and names that set (count, content hash).

The metric itself comes from :func:`landmarks.evaluate.evaluate` (design section 3: one module
computes every NME); this wrapper only remembers results, so the fallback loop evaluates the
reference once however many candidates it gates against it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from landmarks.errors import DataError


class Evaluator:
    """``nme(predictor)`` -> ``nme_io`` in percent on ``dataset``, cached per predictor."""

    def __init__(self, dataset: Any, name: str | None = None) -> None:
        if len(dataset) == 0:
            raise DataError("the eval set is empty; the gate needs at least one annotated face")
        self.dataset = dataset
        self.name = name or str(getattr(dataset, "name", "") or getattr(dataset, "spec", "") or "eval")
        self.count = len(dataset)
        self._cache: dict[tuple[str, str], float] = {}
        self._hash: str | None = None

    @property
    def content_hash(self) -> str:
        """sha256 over the per-face content hashes: names the eval set in reports and manifests."""
        if self._hash is None and callable(getattr(self.dataset, "content_hash", None)):
            self._hash = str(self.dataset.content_hash())
        if self._hash is None:
            digest = hashlib.sha256()
            for item in dataset_hashes(self.dataset):
                digest.update(item.encode())
            self._hash = digest.hexdigest()
        return self._hash

    def nme(self, predictor: Any) -> float:
        key = (str(getattr(predictor, "path", id(predictor))), getattr(predictor, "runtime", ""))
        if key not in self._cache:
            from landmarks.evaluate import evaluate

            self._cache[key] = float(evaluate(predictor, self.dataset, progress=False).metrics.nme_io)
        return self._cache[key]


def dataset_hashes(dataset: Any) -> list[str]:
    hashes = dataset.item_hashes()
    return [str(h) for h in (hashes.values() if isinstance(hashes, dict) else hashes)]
