"""Landmarks on any photo, folder, video or webcam, with the shipped model or any artifact.

Usage::

    python -m landmarks.predict photo.jpg                               # every face, shipped INT8 model, JSON line
    python -m landmarks.predict photo.jpg --out out/                    # out/photo.{pts,json}, photo_overlay.png
    python -m landmarks.predict photos/ --model student.tflite --out out/   # a folder, searched recursively
    python -m landmarks.predict crops/ --model student.onnx --format solution --out solution.txt
    python -m landmarks.predict --video clip.avi --max-frames 300 --out out/
    python -m landmarks.predict --video 0                               # webcam 0, prints FPS

``--model`` takes an ONNX / TFLite artifact or a torch checkpoint; without it the shipped INT8
ONNX model of ``landmarks/zoo`` is used (see its MODEL_CARD.md). The older form with the model
first (``python -m landmarks.predict student.onnx photo.jpg``) still works.

Whole photos: faces are found with dlib's HOG detector (:mod:`landmarks.detect`), every face by
default, largest first (``--max-faces N`` keeps N). Images under 500 px are upsampled for the
detector automatically (``--upsample N`` fixes it), so a 40 px face in a small photo is found.
Each detector box is mapped to the landmark box it stands for (the calibration measured on
300-W), and the model's square crop (DESIGN.md, "Coordinates") of that box is fed to the model.
``--no-detect`` treats each image as one face crop instead: the whole image, padded to a square.
The Python API behind this command is :class:`landmarks.api.FaceLandmarker`.

``--format solution`` writes the face-synthetics challenge submission: one line per image,
``name x1 y1 ... x68 y68``, 0-based pixel coordinates (pixel centres at integers, as in that
benchmark's ``annot.pkl``) of the given image; the images are face crops, so there is no detection.
``name`` is the image's path relative to the input folder.

Coordinates: ``.json`` files hold 0-based continuous pixel coordinates (pixel ``k`` spans
``[k, k+1)``, docs/DESIGN.md "Coordinates"); ``.pts`` files are iBUG 1-based.

Images: JPEG, PNG, BMP, WebP; grey, 16-bit, alpha and CMYK images are converted to 8-bit RGB.
In a folder, an image that cannot be used (truncated, undecodable, larger than 100 megapixels,
no face) is reported on stderr as ``skipped: PATH: reason`` and the rest are processed; files
that are not images are counted in one ``ignored`` line; progress goes to stderr every 25 images.

Exit status: 0 when at least one face was found; 2 for a usage or input error (no model given and
none shipped, missing model or image, ``--out`` naming a file, unreadable image or video, no face
found in any image), with one line on stderr.
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
from landmarks.api import Face, FaceLandmarker, LandmarkPipeline
from landmarks.cli import add_progress, add_threads, check_output_dir, check_output_file, new_parser
from landmarks.coords import continuous_to_index, landmark_box
from landmarks.data.formats import IMAGE_SUFFIXES
from landmarks.describe import add_description_flags, description_from_args
from landmarks.detect import DETECTORS
from landmarks.errors import ConfigError, DataError, cli_errors
from landmarks.runtimes import MODEL_SUFFIXES  # a positional argument with one of these is the model

PROG = "python -m landmarks.predict"
PROGRESS_EVERY = 25
FaceLandmarks = Face  # the name before landmarks.api existed
COORDINATES = "0-based continuous pixel coordinates: pixel k spans [k, k+1) (the .pts files are 1-based iBUG)"
POINT_COLOR = (40, 220, 60)  # RGB
BOX_COLOR = (60, 120, 255)


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


def draw_overlay(image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
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


def write_face_files(out_dir: Path, name: str, image: np.ndarray, faces: Sequence[Face],
                     info: dict[str, Any]) -> list[Path]:
    """``<name>.pts`` (face 0; ``<name>_face<k>.pts`` for more), ``<name>.json``, ``<name>_overlay.png``."""
    from landmarks.data import write_pts

    written = [write_pts(out_dir / (f"{name}.pts" if k == 0 else f"{name}_face{k}.pts"), face.points)
               for k, face in enumerate(faces)]
    written.append(atomic.write_json(out_dir / f"{name}.json", image_json(image, faces, info)))
    written.append(write_png(out_dir / f"{name}_overlay.png", draw_overlay(image, faces)))
    return written


def image_json(image: np.ndarray, faces: Sequence[Face], info: dict[str, Any]) -> dict[str, Any]:
    h, w = image.shape[:2]
    return {**info, "width": w, "height": h, "coordinates": COORDINATES, "faces": [f.to_json() for f in faces]}


@dataclass
class PredictSummary:
    images: int = 0
    with_face: int = 0
    faces: int = 0
    skipped: int = 0


def ignored_files(root: Path) -> list[Path]:
    """Files under a folder that :func:`find_images` leaves out (not images by suffix; hidden ones aside)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def predict_images(pipeline: Callable[[np.ndarray], list[Face]], source: str | Path, out: Path | None, *,
                   log: Callable[[str], None] = print, warn: Callable[[str], None] | None = None,
                   info: dict[str, Any] | None = None, progress: bool = True) -> PredictSummary:
    """Landmarks of every image under ``source``; files under ``out`` (mirroring subfolders) or JSON lines.

    ``pipeline``: a :class:`~landmarks.api.FaceLandmarker` or :class:`~landmarks.api.LandmarkPipeline`.
    One image: an unreadable image or no face is a :class:`DataError`. A folder: such images are
    reported through ``warn`` and skipped, files that are not images counted in one line, progress
    written through ``warn`` every :data:`PROGRESS_EVERY` images (unless ``progress`` is False); a
    folder where no image has a face
    is a :class:`DataError`.
    """
    from landmarks.data import read_image
    from landmarks.progress import log_progress

    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    root, images = find_images(source)
    single = Path(source).is_file()
    if not single:
        ignored = ignored_files(root)
        if ignored:
            kinds = ", ".join(sorted({p.suffix.lower() or "no suffix" for p in ignored}))
            warn(f"ignored {len(ignored)} file(s) that are not {'/'.join(IMAGE_SUFFIXES)} images ({kinds})")
    summary = PredictSummary()
    stream = _LineStream(warn)
    shown = not single and progress
    for path in log_progress(images, "predict", every=PROGRESS_EVERY, stream=stream) if shown else images:
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
            hint = "try --upsample 2 for small faces, or --no-detect if the image is a face crop"
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


class _LineStream:
    """A file-like ``write`` that hands whole lines to a callback (for :func:`log_progress`)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit

    def write(self, text: str) -> int:
        if text.strip():
            self.emit(text.rstrip("\n"))
        return len(text)

    def flush(self) -> None:
        pass


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
    p = new_parser(PROG, head, epilog=body, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER",
                   help="an image file or a folder of images (older form: MODEL IMAGE_OR_FOLDER)")
    p.add_argument("--model", type=Path, help="ONNX / TFLite artifact or torch checkpoint (default: the shipped "
                                              "INT8 model, landmarks/zoo)")
    p.add_argument("--video", help="video file, or a camera number (0: the default webcam)")
    p.add_argument("--out", type=Path, help="output folder (solution format: the submission file)")
    p.add_argument("--format", choices=("files", "solution"), default="files",
                   help="files: .pts/.json/overlay per image (default); solution: face-synthetics submission")
    p.add_argument("--no-detect", action="store_true", help="images are face crops: the whole image is the crop")
    p.add_argument("--detector", default="dlib-hog", choices=sorted(DETECTORS), help="face detector")
    p.add_argument("--upsample", type=int, default=None,
                   help="detector upsampling (default: automatic, 1-2 for images under 500 px; 1 finds ~40 px faces)")
    p.add_argument("--max-faces", type=int, default=None, help="faces per image, largest first (default: all)")
    p.add_argument("--max-frames", type=int, help="video: stop after this many frames")
    add_threads(p)
    add_progress(p)
    add_description_flags(p)
    return p


def split_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """``(model, image)`` from ``--model`` and the positionals; a first positional ending in
    .onnx/.tflite/.pt/.pth is the model (the older ``MODEL IMAGE_OR_FOLDER`` form)."""
    inputs, model = list(args.inputs), args.model
    if inputs and Path(inputs[0]).suffix.lower() in MODEL_SUFFIXES:
        if model is not None:
            parser.error(f"two models given: --model {model} and {inputs[0]}")
        model = Path(inputs.pop(0))
    if len(inputs) > 1:
        parser.error("give one IMAGE_OR_FOLDER (a folder for many images); the model goes in --model")
    return model, inputs[0] if inputs else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    model, images = split_inputs(parser, args)
    if (images is None) == (args.video is None):
        parser.error("give either IMAGE_OR_FOLDER or --video PATH|N")
    with cli_errors(PROG) as errors:
        if args.out is not None and (args.out.is_dir() or not args.out.suffix):
            errors.folder = args.out
        if args.out is not None:  # before any work: a file, or a path below one, cannot be the output
            solution = args.format == "solution" and args.video is None and not args.out.is_dir()
            (check_output_file if solution else check_output_dir)(args.out)
        if args.max_faces is not None and args.max_faces < 1:
            raise ConfigError(f"--max-faces must be at least 1, got {args.max_faces}")
        detect = not args.no_detect and args.format != "solution"
        landmarker = FaceLandmarker(model, detector=args.detector if detect else None, upsample=args.upsample,
                                    max_faces=args.max_faces, threads=args.threads,
                                    description=description_from_args(args))
        pipeline = landmarker.pipeline
        if args.video is not None:
            run_video(pipeline, args.video, max_frames=args.max_frames, out=args.out)
        elif args.format == "solution":
            target = args.out or Path("solution.txt")
            target = target / "solution.txt" if target.is_dir() else target
            lines = solution_lines(pipeline, images)
            atomic.write_text(target, "\n".join(lines) + "\n")
            print(f"wrote {target}: {len(lines)} images")
        else:
            detector = landmarker.detector
            info = {"model": str(landmarker.model_path), "detector": detector.name if detector else None}
            summary = predict_images(landmarker, images, args.out, info=info, progress=args.progress is not False)
            line = (f"{summary.with_face}/{summary.images} images with a face ({summary.faces} faces, "
                    f"{summary.skipped} skipped)")
            if args.out is not None:
                print(f"{line} -> {args.out}")
            elif summary.images > 1:
                print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
