"""Face detection on whole photos, and the detector-box -> model-crop calibration.

Models are trained and evaluated on the square crop (docs/DESIGN.md, "Coordinates") of the
*ground-truth landmark box*. A face detector returns a different box (dlib's HOG box is a square
from the brows to the chin, a little narrower than the jaw), so feeding its box straight into the
crop gives a crop the model never saw.
:func:`calibrated_box` maps a detector box to the landmark box it stands for, with constants
measured on the 300-W train folders by ``benchmarks/box_calibration.py``
(``benchmarks/results/box_calibration.md``); the model's own ``crop_scale`` is then applied as usual.

Usage::

    detector = load_detector()                       # dlib's HOG detector, from the dlib-bin wheel
    for det in detector.detect(image_rgb):           # best face first
        box = calibrated_box(det.box, detector.calibration)
        crop, transform = crop_face(image_rgb, box, meta.crop_scale, meta.input_size)

OpenCV's Haar cascades are not an option with the installed OpenCV 5: its wheels ship neither
``CascadeClassifier`` nor the ``haarcascade_*.xml`` files (``cv2.data.haarcascades`` is empty).
dlib's frontal-face detector is compiled into the ``dlib-bin`` wheel, so it needs no download.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from landmarks.errors import ConfigError, UnsupportedBackendError


@dataclass(frozen=True)
class BoxCalibration:
    """How a detector's box relates to the ground-truth landmark box, in units of the detector box side.

    ``scale`` = ``max(w, h)`` of the landmark box / detector box side; ``dx``, ``dy`` = landmark-box
    centre minus detector-box centre. Medians over the faces the detector found.
    """

    scale: float
    dx: float
    dy: float
    source: str

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ConfigError(f"box calibration scale must be positive, got {self.scale}")


# Measured by benchmarks/box_calibration.py on 300-W helen/trainset + lfpw/trainset + afw: trimmed means
# over 1,917 detected faces (see benchmarks/results/box_calibration.{json,md} for the spread, the detection
# rate, and the test-set check: mean IoU of calibrated vs GT crop 0.822, raw detector box 0.755).
CALIBRATIONS: dict[str, BoxCalibration] = {
    "dlib-hog": BoxCalibration(
        scale=0.9627, dx=-0.0034, dy=0.0836,
        source="benchmarks/results/box_calibration.json (300-W train, dlib-bin 20.0.1, upsample 0)",
    ),
}


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` ``[x0, y0, x1, y1]`` in continuous image coordinates, detector ``score``."""

    box: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


def calibrated_box(box: np.ndarray, calibration: BoxCalibration) -> np.ndarray:
    """The square landmark box a detector box stands for; feed it to ``crop_face`` like a GT box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    cx = (x0 + x1) / 2 + calibration.dx * side
    cy = (y0 + y1) / 2 + calibration.dy * side
    half = calibration.scale * side / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def rank_detections(detections: list[Detection], image_shape: tuple[int, ...]) -> list[Detection]:
    """Largest face first; among equal sizes, the one nearest the image centre (a portrait's subject)."""
    h, w = image_shape[:2]

    def key(det: Detection) -> tuple[float, float]:
        cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
        return -round(det.area), float(np.hypot(cx - w / 2, cy - h / 2))

    return sorted(detections, key=key)


class FaceDetector(ABC):
    """Finds faces in uint8 RGB images; ``calibration`` maps its boxes to landmark boxes."""

    name: str = ""

    def __init__(self, calibration: BoxCalibration | None = None) -> None:
        self.calibration = calibration or CALIBRATIONS[self.name]

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (uint8 RGB ``[H, W, 3]``), best first (see :func:`rank_detections`)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect() needs a uint8 RGB image [H, W, 3], got {image.dtype} {list(image.shape)}")
        return rank_detections(self._detect(np.ascontiguousarray(image)), image.shape)

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[Detection]:
        """Unordered detections of one image."""


# upsample=None ("auto"): small images are doubled before detection, so that a 40 px face in a small photo
# (a 184x274 portrait) is found; larger ones are searched as they are (80 px faces and up).
AUTO_UPSAMPLE_SIDE = 500  # longer side below this: double once; below half of it: twice
MAX_AUTO_UPSAMPLE = 2


def auto_upsample(image_shape: tuple[int, ...]) -> int:
    """How many times dlib doubles an image of this shape when ``upsample`` is ``None`` (auto)."""
    side, times = max(image_shape[:2]), 0
    while side * 2**times < AUTO_UPSAMPLE_SIDE and times < MAX_AUTO_UPSAMPLE:
        times += 1
    return times


class DlibHogDetector(FaceDetector):
    """dlib's HOG + linear-SVM frontal face detector (compiled into the ``dlib-bin`` wheel).

    It finds faces of about 80 px and larger; ``upsample`` doubles the image that many times
    first (finds 40 px faces with 1, at about four times the cost). ``None``: automatic, by
    image size (:func:`auto_upsample`).
    """

    name = "dlib-hog"

    def __init__(self, upsample: int | None = 0, threshold: float = 0.0,
                 calibration: BoxCalibration | None = None) -> None:
        if upsample is not None and upsample < 0:
            raise ConfigError(f"upsample must be >= 0, got {upsample}")
        super().__init__(calibration)
        try:
            import dlib
        except ImportError:
            raise UnsupportedBackendError(
                "face detection needs dlib's detector: pip install dlib-bin (or pass --no-detect for face crops)"
            ) from None
        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.threshold = threshold

    def _detect(self, image: np.ndarray) -> list[Detection]:
        upsample = auto_upsample(image.shape) if self.upsample is None else self.upsample
        rects, scores, _ = self._detector.run(image, upsample, self.threshold)
        # dlib rectangles are inclusive pixel indices: pixel k spans [k, k+1) in continuous coordinates
        return [Detection(np.array([r.left(), r.top(), r.right() + 1.0, r.bottom() + 1.0]), float(s))
                for r, s in zip(rects, scores, strict=True)]


DETECTORS: dict[str, type[FaceDetector]] = {"dlib-hog": DlibHogDetector}


def load_detector(name: str = "dlib-hog", *, upsample: int | None = 0) -> FaceDetector:
    """A detector by name (see :data:`DETECTORS`), with its measured box calibration.

    ``upsample=None`` chooses by image size (:func:`auto_upsample`), as ``landmarks.predict`` does.
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; choose from {', '.join(DETECTORS)}")
    return DETECTORS[name](upsample=upsample)
