"""Readers of the dataset formats of docs/DESIGN.md, "Data", and format detection.

Every reader turns its on-disk convention into 0-based continuous coordinates here, once
(through :mod:`landmarks.coords`), so nothing downstream needs to know where a face came from.
Readers *scan* first, collecting every bad file with its reason, so that
``python -m landmarks.data`` can list them all; :func:`load_records` then refuses a dataset
with any bad file, naming it.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from landmarks import atomic
from landmarks.coords import continuous_to_pts, index_to_continuous, pts_to_continuous
from landmarks.data.imageheader import MAX_IMAGE_PIXELS, HeaderError, read_header
from landmarks.data.specs import is_synthetic_spec
from landmarks.errors import DataError

# The image files every command reads (datasets, unlabeled faces, photos), defined here only.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
FORMATS = ("pts", "synthetics_pkl", "face_synthetics", "wflw", "synthetic")
SYNTHETICS_PKL_NAME = "annot.pkl"
WFLW_IMAGES_DIR = "WFLW_images"
WFLW_POINTS = 98
SYNTHETICS_POINTS = 68
LDMKS_SUFFIX = "_ldmks.txt"  # FaceSynthetics native layout: NNNNNN.png + NNNNNN_ldmks.txt
LDMKS_LINES = 70  # the 68 iBUG points, then the two pupils (not kept)


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """One annotated face: ``key`` is unique and path-based (stable across machines)."""

    key: str
    image_path: Path
    points: np.ndarray  # [P, 2] float64, 0-based continuous image coordinates

    def __post_init__(self) -> None:
        points = np.array(self.points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
            raise ValueError(f"{self.key}: points must have shape [P, 2], got {points.shape}")
        points.flags.writeable = False  # records are shared between datasets and workers
        object.__setattr__(self, "image_path", Path(self.image_path))
        object.__setattr__(self, "points", points)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])


@dataclass(frozen=True)
class BadFile:
    """A file (or a line of a list file) that cannot be used, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class ScanResult:
    """What a reader found: usable records, and every problem it met on the way."""

    format: str
    root: Path
    records: list[FaceRecord]
    problems: list[BadFile] = field(default_factory=list)


# ---------------------------------------------------------------------------- images


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB ``[H, W, 3]``.

    Grey, alpha (dropped), 16-bit (scaled to 8) and CMYK images are converted. The declared size
    is checked before decoding (:data:`~landmarks.data.imageheader.MAX_IMAGE_PIXELS`), and a PNG
    or JPEG whose data stops early is refused rather than decoded half grey.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"{path}: cannot read image ({err.strerror or err})") from err
    _check_header(path, data)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as err:  # a format whose header we do not read, beyond OpenCV's own limits
        raise DataError(f"{path}: cannot decode image ({str(err).strip().splitlines()[-1]})") from err
    if image is None:
        raise DataError(f"{path}: cannot decode image (not a valid JPEG/PNG/BMP/WebP file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_header(path: Path, data: np.ndarray) -> None:
    try:
        header = read_header(data.tobytes())
    except HeaderError as err:
        raise DataError(f"{path}: cannot decode image ({err})") from err
    if header is None:
        return
    if header.pixels > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: {header.kind.upper()} declares {header.width}x{header.height} pixels, above the "
                        f"limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels; not decoded")
    if header.width == 0 or header.height == 0:
        raise DataError(f"{path}: {header.kind.upper()} declares an empty {header.width}x{header.height} image")
    if header.truncated:
        raise DataError(f"{path}: truncated {header.kind.upper()} file (the image data stops before its end)")


# ---------------------------------------------------------------------------- iBUG .pts

_VERSION_RE = re.compile(r"version:\s*1(\.0*)?")
_NPOINTS_RE = re.compile(r"n_points:\s*(\d+)")


def read_pts(path: str | Path) -> np.ndarray:
    """Read an iBUG ``.pts`` file (1-based on disk) as ``[N, 2]`` continuous coordinates."""
    path = Path(path)
    return pts_to_continuous(_parse_pts(_read_text(path, ".pts"), path))


def _read_text(path: Path, kind: str) -> str:
    """A small annotation file as text (UTF-8, BOM allowed); a one-line DataError if it cannot be."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a text {kind} file") from err


def _parse_pts(text: str, path: Path) -> np.ndarray:
    """Strict parse: ``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or not _VERSION_RE.fullmatch(lines[0]):
        raise DataError(f"{path}: malformed .pts: first line must be 'version: 1'")
    count = _NPOINTS_RE.fullmatch(lines[1]) if len(lines) > 1 else None
    if count is None or int(count.group(1)) == 0:
        raise DataError(f"{path}: malformed .pts: second line must be 'n_points: N' with N > 0")
    n = int(count.group(1))
    if len(lines) < 3 or lines[2] != "{" or lines[-1] != "}":
        raise DataError(f"{path}: malformed .pts: points must be enclosed in '{{' and '}}' lines")
    body = lines[3:-1]
    if len(body) != n:
        raise DataError(f"{path}: malformed .pts: n_points is {n} but {len(body)} point lines were found")
    return np.array([_parse_xy(line, path, i + 4) for i, line in enumerate(body)], dtype=np.float64)


def _parse_xy(line: str, path: Path, line_no: int) -> tuple[float, float]:
    parts = line.split()
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
    except ValueError as err:
        raise DataError(f"{path}: malformed .pts: line {line_no} is not two numbers: {line!r}") from err
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DataError(f"{path}: malformed .pts: line {line_no} has a non-finite coordinate: {line!r}")
    return x, y


def write_pts(path: str | Path, points: np.ndarray) -> Path:
    """Write continuous coordinates as an iBUG ``.pts`` file (1-based), atomically.

    Values are written with Python's shortest round-trip repr, so reading the file back
    gives the same 1-based numbers that were written.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(f"points must have shape [N, 2] with N > 0, got {points.shape}")
    if not np.isfinite(points).all():
        raise DataError(f"{path}: refusing to write non-finite landmark coordinates")
    on_disk = continuous_to_pts(points)
    body = "\n".join(f"{float(x)!r} {float(y)!r}" for x, y in on_disk)
    return atomic.write_text(path, f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")


def _walk(root: Path) -> list[Path]:
    """Files under ``root``, sorted, skipping hidden ones (e.g. atomic-write temporaries)."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _key(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def scan_pts_folder(root: str | Path) -> ScanResult:
    """Pair every image under ``root`` with its same-named ``.pts``; collect the problems."""
    root = Path(root)
    files = _walk(root)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    annotations = {p.with_suffix(""): p for p in files if p.suffix.lower() == ".pts"}
    if not images and not annotations:
        raise DataError(f"{root}: no images (.jpg/.png) and no .pts files found")
    problems: list[BadFile] = []
    by_stem: dict[Path, list[Path]] = {}
    for image in images:
        by_stem.setdefault(image.with_suffix(""), []).append(image)
    records = []
    for stem, stem_images in by_stem.items():
        record = _pts_record(root, stem, stem_images, annotations.get(stem), problems)
        if record is not None:
            records.append(record)
    problems += [BadFile(p, "annotation without an image (no same-named .jpg/.png)")
                 for stem, p in annotations.items() if stem not in by_stem]
    records = _drop_minority_counts(records, problems)
    return ScanResult("pts", root, records, sorted(problems, key=lambda b: str(b.path)))


def _pts_record(
    root: Path, stem: Path, images: list[Path], pts_path: Path | None, problems: list[BadFile]
) -> FaceRecord | None:
    if pts_path is None:
        problems += [BadFile(img, f"image without annotation (no {stem.name}.pts)") for img in images]
        return None
    if len(images) > 1:
        names = ", ".join(p.name for p in images)
        problems.append(BadFile(pts_path, f"ambiguous: several images share its name ({names})"))
        return None
    try:
        points = read_pts(pts_path)
    except DataError as err:
        problems.append(BadFile(pts_path, str(err).removeprefix(f"{pts_path}: ")))
        return None
    return FaceRecord(_key(root, images[0]), images[0], points)


def _drop_minority_counts(records: list[FaceRecord], problems: list[BadFile]) -> list[FaceRecord]:
    """All files of a set must have one point count; report those that differ from the majority."""
    counts = Counter(r.num_points for r in records)
    if len(counts) <= 1:
        return records
    majority = counts.most_common(1)[0][0]
    for r in records:
        if r.num_points != majority:
            problems.append(BadFile(r.image_path.with_suffix(".pts"),
                                    f"mixed point counts: has {r.num_points} points, "
                                    f"the rest of the set has {majority}"))
    return [r for r in records if r.num_points == majority]


# ---------------------------------------------------------------------------- annot.pkl

def _allowed_pickle_globals() -> frozenset[tuple[str, str]]:
    names = []
    for core in ("numpy.core", "numpy._core"):
        names += [(f"{core}.multiarray", "_reconstruct"), (f"{core}.multiarray", "scalar"),
                  (f"{core}.numeric", "_frombuffer")]
    # ndarray/dtype: every array pickle; _codecs.encode: array bytes in protocol <= 2 pickles.
    return frozenset([*names, ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")])


_PICKLE_ALLOWED = _allowed_pickle_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles lists, tuples, strings, numbers and numpy arrays, and nothing else.

    ``pickle.load`` on a downloaded file runs arbitrary code; this only resolves the few
    globals that rebuilding a numpy array needs, so a hostile reference is refused before
    it is ever looked up or called.
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_ALLOWED:
            raise DataError(f"pickle contains {module}.{name}, only lists/tuples/arrays are allowed")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core alias on numpy 2
            return super().find_class(module, name)


def restricted_loads(data: bytes) -> object:
    """``pickle.loads`` through :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def scan_synthetics_pkl(pkl_path: str | Path) -> ScanResult:
    """Read a face-synthetics ``annot.pkl``: ``(image names, 68x2 arrays)``, 0-based pixel indices."""
    pkl_path = Path(pkl_path)
    try:
        obj = restricted_loads(pkl_path.read_bytes())
    except DataError as err:
        raise DataError(f"{pkl_path}: {err}") from err
    except OSError as err:
        raise DataError(f"{pkl_path}: cannot read ({err.strerror or err})") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError,
            UnicodeDecodeError) as err:  # what a truncated or corrupt pickle raises
        raise DataError(f"{pkl_path}: not a valid pickle ({type(err).__name__}: {err})") from err
    names, arrays = _pkl_structure(obj, pkl_path)
    root = pkl_path.parent
    records, problems = [], []
    for i, (name, array) in enumerate(zip(names, arrays, strict=True)):
        record = _pkl_record(root, i, name, array, problems)
        if record is not None:
            records.append(record)
    return ScanResult("synthetics_pkl", root, records, problems)


def _pkl_structure(obj: object, path: Path) -> tuple[Sequence[object], Sequence[object]]:
    if not isinstance(obj, tuple | list) or len(obj) != 2:
        raise DataError(f"{path}: expected a pair (list of image names, list of 68x2 arrays)")
    names, arrays = obj
    if isinstance(arrays, np.ndarray) and arrays.ndim == 3:
        arrays = list(arrays)
    if not isinstance(names, tuple | list) or not isinstance(arrays, tuple | list):
        raise DataError(f"{path}: expected a pair (list of image names, list of 68x2 arrays)")
    if len(names) != len(arrays):
        raise DataError(f"{path}: {len(names)} image names but {len(arrays)} landmark arrays")
    if not names:
        raise DataError(f"{path}: contains no faces")
    return names, arrays


def _pkl_record(
    root: Path, i: int, name: object, array: object, problems: list[BadFile]
) -> FaceRecord | None:
    if not isinstance(name, str) or not name:
        problems.append(BadFile(root / SYNTHETICS_PKL_NAME, f"entry {i}: image name is not a string"))
        return None
    rel = PurePosixPath(name.replace("\\", "/"))
    image = root / rel
    if rel.is_absolute() or ".." in rel.parts:
        problems.append(BadFile(image, f"entry {i}: image name leaves the dataset folder"))
        return None
    reason = _check_array(array, (SYNTHETICS_POINTS, 2))
    if reason is None and not image.is_file():
        reason = "image not found"
    if reason is not None:
        problems.append(BadFile(image, f"entry {i}: {reason}"))
        return None
    points = index_to_continuous(np.asarray(array, dtype=np.float64))
    return FaceRecord(rel.as_posix(), image, points)


def _check_array(array: object, shape: tuple[int, int]) -> str | None:
    if not isinstance(array, np.ndarray | list | tuple):
        return f"landmarks are a {type(array).__name__}, not an array"
    a = np.asarray(array)
    if a.dtype.kind not in "fiu":
        return f"landmarks have dtype {a.dtype}, not numbers"
    if a.shape != shape:
        return f"landmarks have shape {a.shape}, expected {shape}"
    if not np.isfinite(a).all():
        return "landmarks contain NaN or inf"
    return None


# ---------------------------------------------------------------------------- FaceSynthetics native


def read_ldmks(path: str | Path) -> np.ndarray:
    """A FaceSynthetics ``NNNNNN_ldmks.txt`` (70 lines ``x y``, 0-based pixel indices) as ``[68, 2]``
    continuous coordinates: the 68 iBUG points; the two pupils (lines 69-70) are dropped."""
    path = Path(path)
    lines = _read_text(path, "_ldmks.txt").strip().splitlines()
    if len(lines) != LDMKS_LINES:
        raise DataError(f"{path}: malformed _ldmks.txt: expected {LDMKS_LINES} lines 'x y' "
                        f"(68 iBUG points + 2 pupils), found {len(lines)}")
    points = []
    for i, line in enumerate(lines[:SYNTHETICS_POINTS]):
        try:
            points.append(_parse_xy(line, path, i + 1))
        except DataError as err:
            raise DataError(str(err).replace("malformed .pts", "malformed _ldmks.txt")) from err
    return index_to_continuous(np.array(points, dtype=np.float64))


def scan_face_synthetics(root: str | Path) -> ScanResult:
    """Pair every ``NNNNNN_ldmks.txt`` under ``root`` with its ``NNNNNN.png``/``.jpg``.

    Images without landmarks are reported, except FaceSynthetics' own ``NNNNNN_seg.png`` masks.
    """
    root = Path(root)
    files = _walk(root)
    annotations = {p.with_name(p.name.removesuffix(LDMKS_SUFFIX)): p for p in files if p.name.endswith(LDMKS_SUFFIX)}
    by_stem: dict[Path, list[Path]] = {}
    for image in (p for p in files if p.suffix.lower() in IMAGE_SUFFIXES):
        stem = image.with_suffix("")
        if stem.name.endswith("_seg") and stem.with_name(stem.name.removesuffix("_seg")) in annotations:
            continue
        by_stem.setdefault(stem, []).append(image)
    records, problems = [], []
    for stem, images in by_stem.items():
        ldmks = annotations.get(stem)
        if ldmks is None:
            problems += [BadFile(img, f"image without annotation (no {stem.name}{LDMKS_SUFFIX})") for img in images]
        elif len(images) > 1:
            problems.append(BadFile(ldmks, f"ambiguous: several images share its name "
                                           f"({', '.join(p.name for p in images)})"))
        else:
            try:
                records.append(FaceRecord(_key(root, images[0]), images[0], read_ldmks(ldmks)))
            except DataError as err:
                problems.append(BadFile(ldmks, str(err).removeprefix(f"{ldmks}: ")))
    problems += [BadFile(p, f"annotation without an image (no {stem.name}.png/.jpg)")
                 for stem, p in annotations.items() if stem not in by_stem]
    return ScanResult("face_synthetics", root, records, sorted(problems, key=lambda b: str(b.path)))


# ---------------------------------------------------------------------------- WFLW list

_WFLW_FIELDS = 2 * WFLW_POINTS + 4 + 6 + 1


def scan_wflw_list(list_path: str | Path) -> ScanResult:
    """Read a WFLW annotation list (98 x,y; box; 6 attributes; image path) per line."""
    list_path = Path(list_path)
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DataError(f"{list_path}: cannot read ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{list_path}: not a text file") from err
    roots = _wflw_image_roots(list_path)
    records, problems = [], []
    seen: Counter[str] = Counter()
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rel, points = _parse_wflw_line(line)
            image = _find_wflw_image(rel, roots)
        except DataError as err:
            problems.append(BadFile(list_path, f"line {line_no}: {err}"))
            continue
        records.append(FaceRecord(f"{rel}#{seen[rel]}", image, points))
        seen[rel] += 1
    if not records and not problems:
        raise DataError(f"{list_path}: WFLW list contains no faces")
    return ScanResult("wflw", list_path.parent, records, problems)


def _parse_wflw_line(line: str) -> tuple[str, np.ndarray]:
    parts = line.split(maxsplit=_WFLW_FIELDS - 1)
    if len(parts) != _WFLW_FIELDS:
        raise DataError(f"expected {_WFLW_FIELDS} fields (196 coordinates, 4 box, 6 attributes, "
                        f"image path), found {len(parts)}")
    try:
        numbers = np.array([float(v) for v in parts[:-1]], dtype=np.float64)
    except ValueError as err:
        raise DataError(f"non-numeric field ({err})") from err
    coords = numbers[: 2 * WFLW_POINTS]
    if not np.isfinite(coords).all():
        raise DataError("landmarks contain NaN or inf")
    rel = PurePosixPath(parts[-1].strip().replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise DataError(f"image path {rel} leaves the dataset folder")
    return rel.as_posix(), index_to_continuous(coords.reshape(WFLW_POINTS, 2))


def _wflw_image_roots(list_path: Path) -> list[Path]:
    """``WFLW_images`` beside the list or up to two folders above it, then the list's folder.

    The official layout keeps lists in ``WFLW_annotations/list_98pt_rect_attr_train_test/``
    and images in ``WFLW_images/`` two levels up.
    """
    ancestors = [list_path.parent, *list(list_path.parent.parents)[:2]]
    roots = [a / WFLW_IMAGES_DIR for a in ancestors if (a / WFLW_IMAGES_DIR).is_dir()]
    return [*roots, list_path.parent]


def _find_wflw_image(rel: str, roots: Iterable[Path]) -> Path:
    roots = list(roots)
    for root in roots:
        if (root / rel).is_file():
            return root / rel
    raise DataError(f"image {rel} not found under {', '.join(str(r) for r in roots)}")


# ---------------------------------------------------------------------------- detection


def detect_format(path: str | Path) -> str:
    """Which of :data:`FORMATS` ``path`` holds; a missing, empty or mixed folder is an error."""
    if is_synthetic_spec(path):
        return "synthetic"
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        return _detect_file(path)
    files = _walk(path)
    kinds = _folder_kinds(path, files)
    if len(kinds) > 1:
        raise DataError(f"{path}: mixes dataset formats ({', '.join(sorted(kinds))}); "
                        "name the annot.pkl, the WFLW list or a folder with only .pts or only _ldmks.txt files")
    if kinds:
        return kinds.pop()
    n_images = sum(p.suffix.lower() in IMAGE_SUFFIXES for p in files)
    if n_images == 0:
        raise DataError(f"{path}: empty dataset folder (no images, no annotations)")
    raise DataError(f"{path}: {n_images} images but no annotations "
                    "(expected same-named .pts files, NNNNNN_ldmks.txt files, an annot.pkl, or a WFLW list)")


def _detect_file(path: Path) -> str:
    if path.suffix.lower() == ".pkl":
        return "synthetics_pkl"
    if path.suffix.lower() == ".txt":
        return "wflw"
    raise DataError(f"{path}: not a dataset (expected a folder, an annot.pkl or a WFLW .txt list)")


def _folder_kinds(root: Path, files: list[Path]) -> set[str]:
    kinds = set()
    if (root / SYNTHETICS_PKL_NAME).is_file():
        kinds.add("synthetics_pkl")
    if any(p.suffix.lower() == ".pts" for p in files):
        kinds.add("pts")
    if any(p.name.endswith(LDMKS_SUFFIX) for p in files):
        kinds.add("face_synthetics")
    lists = _wflw_lists(files)
    if len(lists) > 1:
        names = ", ".join(p.name for p in lists)
        raise DataError(f"{root}: holds several WFLW lists ({names}); name the one to use")
    if lists:
        kinds.add("wflw")
    return kinds


def _wflw_lists(files: list[Path]) -> list[Path]:
    return [p for p in files if p.suffix.lower() == ".txt" and p.name.startswith("list_98pt")]


def scan(path: str | Path) -> ScanResult:
    """Detect the format of ``path`` and read it, collecting bad files instead of stopping."""
    kind = detect_format(path)
    if kind == "synthetic":
        raise DataError(f"{path}: the synthetic generator has no files; use open_dataset()")
    path = Path(path)
    if kind == "pts":
        return scan_pts_folder(path)
    if kind == "face_synthetics":
        return scan_face_synthetics(path)
    if kind == "synthetics_pkl":
        return scan_synthetics_pkl(path / SYNTHETICS_PKL_NAME if path.is_dir() else path)
    return scan_wflw_list(path if path.is_file() else _wflw_lists(_walk(path))[0])


def load_records(path: str | Path) -> list[FaceRecord]:
    """All faces of a dataset path; any bad file is a :class:`DataError` that names it."""
    result = scan(path)
    if result.problems:
        first = result.problems[0]
        more = len(result.problems) - 1
        hint = (f" (and {more} more bad file(s); `python -m landmarks.data {path}` lists them)"
                if more else "")
        raise DataError(f"{first}{hint}")
    if not result.records:
        raise DataError(f"{path}: no faces found")
    return result.records
