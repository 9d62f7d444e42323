"""Landmarks on any photo, folder, video or webcam, with any artifact (ONNX, TFLite, torch checkpoint).

Usage::

    python -m landmarks.predict student.onnx photo.jpg --out out/      # out/photo.{pts,json}, photo_overlay.png
    python -m landmarks.predict student.tflite photos/ --out out/      # a folder, searched recursively
    python -m landmarks.predict student.onnx photo.jpg                 # no --out: one JSON line per image
    python -m landmarks.predict student.onnx crops/ --format solution --out solution.txt
    python -m landmarks.predict student.onnx --video clip.avi --max-frames 300 --out out/
    python -m landmarks.predict student.onnx --video 0                 # webcam 0, prints FPS

Whole photos: faces are found with dlib's HOG detector (:mod:`landmarks.detect`), each detector
box is mapped to the landmark box it stands for (the calibration measured on 300-W), and the
model's section-1 crop of that box is fed to the model, as in training. ``--no-detect`` treats each
image as one face crop instead: the whole image, padded to a square, is the model input.

``--format solution`` writes the face-synthetics challenge submission: one line per image,
``name x1 y1 ... x68 y68``, 0-based pixel coordinates (pixel centres at integers, as in that
benchmark's ``annot.pkl``) of the given image; the images are face crops, so there is no detection.
``name`` is the image's path relative to the input folder.

Coordinates: ``.json`` files hold 0-based continuous pixel coordinates (pixel ``k`` spans
``[k, k+1)``, design section 1); ``.pts`` files are iBUG 1-based.

Exit status: 0 when at least one face was found; 2 for a usage or input error (missing model or
image, unreadable image or video, and no face found in any image). In folder mode an image without
a face, or one that cannot be decoded, is reported on stderr and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from landmarks import atomic
from landmarks.coords import CropTransform, continuous_to_index, crop_face, landmark_box
from landmarks.detect import DETECTORS, calibrated_box, load_detector
from landmarks.errors import ConfigError, DataError, cli_errors
from landmarks.runtimes import Predictor, load_predictor

PROG = "python -m landmarks.predict"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
COORDINATES = "0-based continuous pixel coordinates: pixel k spans [k, k+1) (the .pts files are 1-based iBUG)"
POINT_COLOR = (40, 220, 60)  # RGB
BOX_COLOR = (60, 120, 255)


@dataclass(frozen=True)
class FaceLandmarks:
    """One face: ``points`` ``[P, 2]`` in image coordinates (continuous), the boxes that led to them."""

    points: np.ndarray
    crop_box: np.ndarray  # the square the model saw, [x0, y0, x1, y1] in image coordinates
    box: np.ndarray | None = None  # the detector's box; None without detection
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "points": np.round(self.points, 3).tolist(),
            "box": None if self.box is None else np.round(self.box, 2).tolist(),
            "score": None if self.score is None else round(self.score, 4),
            "crop_box": np.round(self.crop_box, 2).tolist(),
        }


class LandmarkPipeline:
    """Detector (optional) + section-1 crops + one predictor call for all faces of an image.

    ``detector=None`` means the image is a face crop: the model sees the whole image, padded to a
    square (``crop_scale`` 1 around the image bounds).
    """

    def __init__(self, predictor: Predictor, detector: Any = None, max_faces: int = 1) -> None:
        if max_faces < 1:
            raise ConfigError(f"--max-faces must be at least 1, got {max_faces}")
        self.predictor = predictor
        self.detector = detector
        self.max_faces = max_faces

    def __call__(self, image: np.ndarray) -> list[FaceLandmarks]:
        """Landmarks of the faces in a uint8 RGB image, best face first (empty when none is found)."""
        if self.detector is None:
            h, w = image.shape[:2]
            return self.from_boxes(image, [np.array([0.0, 0.0, w, h])], crop_scale=1.0)
        detections = self.detector.detect(image)[: self.max_faces]
        boxes = [calibrated_box(d.box, self.detector.calibration) for d in detections]
        return self.from_boxes(image, boxes, detections=detections)

    def from_boxes(self, image: np.ndarray, face_boxes: Sequence[np.ndarray], *, crop_scale: float | None = None,
                   detections: Sequence[Any] = ()) -> list[FaceLandmarks]:
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
            faces.append(FaceLandmarks(
                points=transform.to_image(norm[i] * meta.input_size),
                crop_box=_crop_square(transform),
                box=None if det is None else np.asarray(det.box, dtype=np.float64),
                score=None if det is None else det.score,
            ))
        return faces


def _crop_square(transform: CropTransform) -> np.ndarray:
    side = transform.size / transform.scale
    return np.array([transform.origin_x, transform.origin_y, transform.origin_x + side, transform.origin_y + side])


# ---------------------------------------------------------------------------- images


def find_images(path: str | Path) -> tuple[Path, list[Path]]:
    """``(root, images)``: one image file, or every image under a folder (recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such image or folder")
    images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} images in this folder")
    return path, images


def draw_overlay(image: np.ndarray, faces: Sequence[FaceLandmarks]) -> np.ndarray:
    """A copy of ``image`` (RGB) with each face's detector box and landmarks, sized to the image."""
    out = np.ascontiguousarray(image).copy()
    radius = max(1.0, max(image.shape[:2]) / 250)
    for face in faces:
        if face.box is not None:
            x0, y0, x1, y1 = (round(float(v)) for v in face.box)
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), BOX_COLOR, max(1, int(radius)), cv2.LINE_AA)
        for x, y in continuous_to_index(face.points):  # cv2 draws at pixel indices; shift=4: 1/16 px
            centre = (round(float(x) * 16), round(float(y) * 16))
            cv2.circle(out, centre, round(radius * 16), POINT_COLOR, -1, cv2.LINE_AA, shift=4)
    return out


def write_png(path: Path, image_rgb: np.ndarray) -> Path:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{path}: could not encode the overlay PNG")
    return atomic.write_bytes(path, data.tobytes())


def write_face_files(out_dir: Path, name: str, image: np.ndarray, faces: Sequence[FaceLandmarks],
                     info: dict[str, Any]) -> list[Path]:
    """``<name>.pts`` (face 0; ``<name>_face<k>.pts`` for more), ``<name>.json``, ``<name>_overlay.png``."""
    from landmarks.data import write_pts

    written = [write_pts(out_dir / (f"{name}.pts" if k == 0 else f"{name}_face{k}.pts"), face.points)
               for k, face in enumerate(faces)]
    written.append(atomic.write_json(out_dir / f"{name}.json", image_json(image, faces, info)))
    written.append(write_png(out_dir / f"{name}_overlay.png", draw_overlay(image, faces)))
    return written


def image_json(image: np.ndarray, faces: Sequence[FaceLandmarks], info: dict[str, Any]) -> dict[str, Any]:
    h, w = image.shape[:2]
    return {**info, "width": w, "height": h, "coordinates": COORDINATES, "faces": [f.to_json() for f in faces]}


@dataclass
class PredictSummary:
    images: int = 0
    with_face: int = 0
    faces: int = 0
    skipped: int = 0


def predict_images(pipeline: LandmarkPipeline, source: str | Path, out: Path | None, *,
                   log: Callable[[str], None] = print, warn: Callable[[str], None] | None = None,
                   info: dict[str, Any] | None = None) -> PredictSummary:
    """Landmarks of every image under ``source``; files under ``out`` (mirroring subfolders) or JSON lines.

    One image: an unreadable image or no face is a :class:`DataError`. A folder: such images are
    reported through ``warn`` and skipped; a folder where no image has a face is a :class:`DataError`.
    """
    from landmarks.data import read_image

    warn = warn or (lambda line: print(line, file=sys.stderr))
    root, images = find_images(source)
    single = Path(source).is_file()
    summary = PredictSummary()
    for path in images:
        summary.images += 1
        rel = path.relative_to(root)
        try:
            image = read_image(path)
        except DataError as err:
            if single:
                raise
            warn(f"skipped: {err}")
            summary.skipped += 1
            continue
        faces = pipeline(image)
        if not faces:
            hint = "try --upsample 1 for small faces, or --no-detect if the image is a face crop"
            if single:
                raise DataError(f"{path}: no face found ({hint})")
            warn(f"skipped: {rel}: no face found")
            summary.skipped += 1
            continue
        summary.with_face += 1
        summary.faces += len(faces)
        record = {**(info or {}), "image": rel.as_posix()}
        if out is None:
            log(json.dumps(image_json(image, faces, record)))
        else:
            write_face_files(out / rel.parent, path.stem, image, faces, record)
    if summary.with_face == 0:
        raise DataError(f"{source}: no face found in any of {summary.images} images")
    return summary


def solution_lines(pipeline: LandmarkPipeline, source: str | Path) -> list[str]:
    """Face-synthetics submission lines ``name x1 y1 ... xP yP`` (0-based pixel indices, whole image as crop)."""
    from landmarks.data import read_image

    root, images = find_images(source)
    lines = []
    for path in images:
        (face,) = pipeline(read_image(path))
        coords = " ".join(f"{v:.3f}" for v in continuous_to_index(face.points).ravel())
        lines.append(f"{path.relative_to(root).as_posix()} {coords}")
    return lines


# ---------------------------------------------------------------------------- video


@dataclass(frozen=True)
class VideoSummary:
    frames: int
    frames_with_face: int
    seconds: float  # detection + landmarks, decoding and writing excluded

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def open_video(source: str) -> cv2.VideoCapture:
    """A capture of a file, or of camera ``N`` when ``source`` is a number."""
    capture = cv2.VideoCapture(int(source)) if source.isdigit() else cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if source.isdigit() else f"{source}: video file"
        raise DataError(f"{what} cannot be opened")
    return capture


def run_video(pipeline: LandmarkPipeline, source: str, *, max_frames: int | None = None, out: Path | None = None,
              log: Callable[[str], None] = print) -> VideoSummary:
    """Landmarks frame by frame; with ``out``, ``<stem>_overlay.avi`` (MJPG) and ``<stem>_landmarks.json``.

    A frame where the detector finds nothing reuses the previous frame's landmark box (a one-frame
    tracker), so a face that turns briefly away from the frontal detector keeps its landmarks.
    """
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {max_frames}")
    capture = open_video(source)
    stem = f"camera{source}" if source.isdigit() else Path(source).stem
    fps_in = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer, records, frames, with_face, busy, previous = None, [], 0, 0, 0.0, []
    try:
        target_cm = atomic.atomic_path(out / f"{stem}_overlay.avi", suffix=".avi") if out is not None else nullcontext()
        with target_cm as target:
            while max_frames is None or frames < max_frames:
                ok, bgr = capture.read()
                if not ok:
                    break
                image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                start = time.perf_counter()
                faces = pipeline(image)
                if not faces and previous and pipeline.detector is not None:
                    faces = pipeline.from_boxes(image, [landmark_box(f.points) for f in previous])
                busy += time.perf_counter() - start
                frames += 1
                with_face += bool(faces)
                previous = faces
                if target is not None:
                    if writer is None:
                        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), fps_in,
                                                 (image.shape[1], image.shape[0]))
                    writer.write(cv2.cvtColor(draw_overlay(image, faces), cv2.COLOR_RGB2BGR))
                    records.append({"frame": frames - 1, "faces": [f.to_json() for f in faces]})
            if writer is not None:
                writer.release()
                writer = None
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise DataError(f"{source}: no frame could be read")
    if out is not None:
        atomic.write_json(out / f"{stem}_landmarks.json", {"source": source, "coordinates": COORDINATES,
                                                           "frames": records})
    summary = VideoSummary(frames, with_face, busy)
    log(f"{frames} frames, {with_face} with a face: {summary.fps:.1f} FPS "
        f"({1e3 * busy / frames:.1f} ms/frame detection + landmarks, decoding excluded)")
    return summary


# ---------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    head, body = __doc__.split("\n\n", 1)
    p = argparse.ArgumentParser(prog=PROG, description=head, epilog=body,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="ONNX / TFLite artifact or torch checkpoint (.onnx, .tflite, .pt)")
    p.add_argument("images", nargs="?", metavar="IMAGE_OR_FOLDER", help="an image file or a folder of images")
    p.add_argument("--video", help="video file, or a camera number (0: the default webcam)")
    p.add_argument("--out", type=Path, help="output folder (solution format: the submission file)")
    p.add_argument("--format", choices=("files", "solution"), default="files",
                   help="files: .pts/.json/overlay per image (default); solution: face-synthetics submission")
    p.add_argument("--no-detect", action="store_true", help="images are face crops: the whole image is the crop")
    p.add_argument("--detector", default="dlib-hog", choices=sorted(DETECTORS), help="face detector")
    p.add_argument("--upsample", type=int, default=0, help="detector upsampling: 1 finds faces down to ~40 px")
    p.add_argument("--max-faces", type=int, default=1, help="faces per image, largest first (default: 1)")
    p.add_argument("--max-frames", type=int, help="video: stop after this many frames")
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's choice)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.images is None) == (args.video is None):
        parser.error("give either IMAGE_OR_FOLDER or --video PATH|N")
    with cli_errors(PROG):
        predictor = load_predictor(args.model, num_threads=args.threads)
        detect = not args.no_detect and args.format != "solution"
        detector = None
        if detect:
            detector = load_detector(args.detector, upsample=args.upsample)
        pipeline = LandmarkPipeline(predictor, detector, max_faces=args.max_faces)
        if args.video is not None:
            run_video(pipeline, args.video, max_frames=args.max_frames, out=args.out)
        elif args.format == "solution":
            target = args.out or Path("solution.txt")
            target = target / "solution.txt" if target.is_dir() else target
            lines = solution_lines(pipeline, args.images)
            atomic.write_text(target, "\n".join(lines) + "\n")
            print(f"wrote {target}: {len(lines)} images")
        else:
            info = {"model": str(args.model), "detector": detector.name if detector else None}
            summary = predict_images(pipeline, args.images, args.out, info=info)
            if args.out is not None:
                print(f"{summary.with_face}/{summary.images} images with a face ({summary.faces} faces, "
                      f"{summary.skipped} skipped) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
