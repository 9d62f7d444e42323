"""Calibration data: face crops preprocessed exactly as the artifact's metadata says.

One :class:`CalibrationReader` (onnxruntime's ``CalibrationDataReader`` contract: ``get_next()``
returns one input feed or ``None``, ``rewind()`` starts over) feeds ORT static INT8, and
:func:`representative_dataset` adapts the same reader to TFLite's converter. Pixels go through
:func:`landmarks.runtimes.base.preprocess`, the one place preprocessing lives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from landmarks.errors import DataError
from landmarks.metadata import ArtifactMetadata
from landmarks.runtimes.base import preprocess

try:  # the ABC when onnxruntime is installed; the same two-method contract otherwise
    from onnxruntime.quantization import CalibrationDataReader as _ReaderBase
except ImportError:  # pragma: no cover - onnxruntime is a core dependency
    _ReaderBase = object  # type: ignore[assignment,misc]

DEFAULT_CALIB_COUNT = 256


class CalibrationReader(_ReaderBase):
    """Yields ``{input_name: float32 [1, ...]}`` feeds, one face per call, then ``None``.

    The crops are preprocessed once, on first use, and kept in memory (256 crops of 112x112
    are ~38 MB), because ORT calibration, the sensitivity pass and TFLite each read them again.
    """

    def __init__(
        self,
        dataset: Any,
        metadata: ArtifactMetadata,
        input_name: str = "input",
        *,
        limit: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.metadata = metadata
        self.input_name = input_name
        self.limit = limit
        self._inputs: np.ndarray | None = None
        self._pos = 0

    @property
    def inputs(self) -> np.ndarray:
        """All calibration inputs, ``[N, ...]`` in the metadata's layout."""
        if self._inputs is None:
            self._inputs = load_inputs(self.dataset, self.metadata, self.limit)
        return self._inputs

    def with_input(self, input_name: str, metadata: ArtifactMetadata | None = None) -> CalibrationReader:
        """The same faces for another model input (e.g. a TFLite model's NHWC input)."""
        other = CalibrationReader(self.dataset, metadata or self.metadata, input_name, limit=self.limit)
        if metadata is None or metadata == self.metadata:
            other._inputs = self._inputs
        return other

    def head(self, count: int) -> CalibrationReader:
        """The first ``count`` faces, sharing the decoded inputs (the sensitivity pass's subset)."""
        other = CalibrationReader(self.dataset, self.metadata, self.input_name, limit=min(count, len(self)))
        other._inputs = self.inputs[:count]
        return other

    def get_next(self) -> dict[str, np.ndarray] | None:
        inputs = self.inputs
        if self._pos >= len(inputs):
            return None
        feed = {self.input_name: inputs[self._pos : self._pos + 1]}
        self._pos += 1
        return feed

    def rewind(self) -> None:
        self._pos = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def representative_dataset(reader: CalibrationReader) -> Callable[[], Iterator[list[np.ndarray]]]:
    """TFLite's ``representative_dataset``: a factory of generators of ``[input]`` lists."""

    def generate() -> Iterator[list[np.ndarray]]:
        for feed in reader:
            yield [feed[reader.input_name]]

    return generate


def load_inputs(dataset: Any, metadata: ArtifactMetadata, limit: int | None = None) -> np.ndarray:
    """Preprocessed inputs of ``limit`` faces spread evenly over the set; empty is a DataError.

    Evenly spaced rather than the first ``limit``: a concatenated set (Helen, LFPW, AFW) is
    ordered by source, and calibration should see all of them.
    """
    total = len(dataset)
    count = total if limit is None else min(limit, total)
    if count == 0:
        raise DataError("the calibration set is empty; give --calib a folder with faces, or 'synthetic'")
    indices = np.unique(np.linspace(0, total - 1, count).round().astype(int))
    crops = np.stack([np.asarray(dataset[int(i)]["image"]) for i in indices])
    return preprocess(crops, metadata)
