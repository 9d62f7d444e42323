"""Landmarks of every face in an image, from Python: one object, created once, called per image.

Usage::

    from landmarks.api import FaceLandmarker
    from landmarks.data import read_image

    landmarker = FaceLandmarker()                    # the shipped INT8 model (landmarks.zoo), dlib's detector
    for face in landmarker.detect(read_image("photo.jpg")):   # RGB uint8 [H, W, 3]; largest face first
        print(face.score, face.box, face.points.shape)          # points: [68, 2]

``FaceLandmarker(model="student.tflite")`` uses another artifact or a torch checkpoint;
``detector=None`` treats every image as one face crop. Coordinates are 0-based continuous
image coordinates (pixel ``k`` spans ``[k, k+1)``, docs/DESIGN.md "Coordinates"). Small images are upsampled
for the detector automatically (``upsample=None``); ``max_faces`` limits the faces per image.
``python -m landmarks.predict`` is a thin command line over this class.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.coords import CropTransform, crop_face
from landmarks.describe import ModelDescription
from landmarks.detect import FaceDetector, calibrated_box, load_detector
from landmarks.errors import ConfigError, DataError
from landmarks.runtimes import Predictor, load_predictor


@dataclass(frozen=True)
class Face:
    """One face: ``points`` ``[P, 2]`` in image coordinates (continuous), the boxes that led to them.

    ``box`` is the detector's box ``[x0, y0, x1, y1]`` and ``score`` its confidence (``None``
    without detection); ``crop_box`` is the square the model saw.
    """

    points: np.ndarray
    crop_box: np.ndarray
    box: np.ndarray | None = None
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "points": np.round(self.points, 3).tolist(),
            "box": None if self.box is None else np.round(self.box, 2).tolist(),
            "score": None if self.score is None else round(self.score, 4),
            "crop_box": np.round(self.crop_box, 2).tolist(),
        }


class LandmarkPipeline:
    """Detector (optional) + square face crops (DESIGN.md, "Coordinates") + one predictor call per image.

    ``detector=None`` means the image is a face crop: the model sees the whole image, padded to a
    square (``crop_scale`` 1 around the image bounds). ``max_faces=None`` keeps every face.
    """

    def __init__(self, predictor: Predictor, detector: FaceDetector | None = None,
                 max_faces: int | None = None) -> None:
        if max_faces is not None and max_faces < 1:
            raise ConfigError(f"--max-faces must be at least 1, got {max_faces}")
        self.predictor = predictor
        self.detector = detector
        self.max_faces = max_faces

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Landmarks of the faces in a uint8 RGB image, largest face first (empty when none is found)."""
        if self.detector is None:
            h, w = image.shape[:2]
            return self.from_boxes(image, [np.array([0.0, 0.0, w, h])], crop_scale=1.0)
        detections = self.detector.detect(image)[: self.max_faces]
        boxes = [calibrated_box(d.box, self.detector.calibration) for d in detections]
        return self.from_boxes(image, boxes, detections=detections)

    def from_boxes(self, image: np.ndarray, face_boxes: Sequence[np.ndarray], *, crop_scale: float | None = None,
                   detections: Sequence[Any] = ()) -> list[Face]:
        """Landmarks for given landmark-equivalent face boxes (a tracker's previous landmark box, say)."""
        if not face_boxes:
            return []
        meta = self.predictor.metadata
        scale = meta.crop_scale if crop_scale is None else crop_scale
        crops, transforms = zip(*(crop_face(image, box, scale, meta.input_size) for box in face_boxes), strict=True)
        norm = self.predictor.predict(np.stack(crops)).points.astype(np.float64)
        faces = []
        for i, transform in enumerate(transforms):
            det = detections[i] if i < len(detections) else None
            faces.append(Face(
                points=transform.to_image(norm[i] * meta.input_size),
                crop_box=_crop_square(transform),
                box=None if det is None else np.asarray(det.box, dtype=np.float64),
                score=None if det is None else det.score,
            ))
        return faces


def _crop_square(transform: CropTransform) -> np.ndarray:
    side = transform.size / transform.scale
    return np.array([transform.origin_x, transform.origin_y, transform.origin_x + side, transform.origin_y + side])


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 RGB ``[H, W, 3]`` view of grey ``[H, W]``, RGBA (alpha dropped) or 16-bit images."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise DataError(f"expected a uint8 (or uint16) image, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise DataError(f"expected an RGB image [H, W, 3], got shape {list(image.shape)}")
    return np.ascontiguousarray(image[:, :, :3])


class FaceLandmarker:
    """Face detector + landmark model, loaded once; :meth:`detect` gives every face of an RGB image.

    ``model``: an ONNX / TFLite artifact or a torch checkpoint; ``None`` is the shipped INT8 model
    (:func:`landmarks.zoo.default_model`, a :class:`~landmarks.errors.ModelError` when none is shipped).
    ``detector``: a name of :data:`landmarks.detect.DETECTORS`, or ``None`` for face crops.
    ``description``: how to feed a model without metadata (:class:`landmarks.describe.ModelDescription`,
    the same as the commands' ``--input-size``, ``--mean``, ... flags).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, detector: str | None = "dlib-hog",
                 upsample: int | None = None, max_faces: int | None = None, threads: int | None = None,
                 description: ModelDescription | None = None) -> None:
        from landmarks.describe import model_metadata

        if model is None:
            from landmarks.zoo import default_model

            model = default_model()
        self.model_path = Path(model)
        metadata = model_metadata(self.model_path, description) if self.model_path.is_file() else None
        self.predictor = load_predictor(self.model_path, num_threads=threads, metadata=metadata)
        self.detector = None if detector is None else load_detector(detector, upsample=upsample)
        self.pipeline = LandmarkPipeline(self.predictor, self.detector, max_faces=max_faces)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face of ``image`` (RGB, as :func:`landmarks.data.read_image` returns), largest first."""
        return self.pipeline(as_rgb(image))

    __call__ = detect
