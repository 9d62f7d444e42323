"""Author ``template.json``: the 3D mean face and its deformation modes, in millimetres.

The runtime only reads the JSON; this script records where its numbers come from so a
reviewer can check them and regenerate the file (``python -m landmarks.synthetic.author_template``).

* x/y of the mean shape: the widely used normalized 2D mean of 68-point faces (OpenFace's
  dlib template), mirrored onto itself so the neutral face is exactly symmetric, scaled so
  the outer eye corners are ~90 mm apart, origin between the eyes at eye level.
* z (toward the camera): anthropometric depths; the nose tip ~35 mm in front of the eye
  corners, the contour at the cheeks ~60 mm behind them, so yaw foreshortens correctly.
* The inner lips of the neutral face coincide (mouth closed); the modes open it.
* Axes: x to image right (the subject's left), y down, z toward the camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landmarks.atomic import write_text
from landmarks.schemes import LandmarkScheme

TEMPLATE_PATH = Path(__file__).with_name("template.json")
MM_PER_UNIT = 170.0

# Normalized 2D mean of 68 points (x, y), iBUG order.
_MEAN_2D = np.array([
    (0.0792, 0.3392), (0.0829, 0.4570), (0.0968, 0.5756), (0.1221, 0.6919), (0.1687, 0.8003),
    (0.2398, 0.8957), (0.3257, 0.9771), (0.4223, 1.0433), (0.5318, 1.0608), (0.6413, 1.0398),
    (0.7381, 0.9723), (0.8244, 0.8896), (0.8948, 0.7925), (0.9394, 0.6815), (0.9611, 0.5622),
    (0.9706, 0.4418), (0.9712, 0.3221), (0.1638, 0.2492), (0.2178, 0.2043), (0.2913, 0.1924),
    (0.3675, 0.2036), (0.4393, 0.2331), (0.5864, 0.2281), (0.6602, 0.1959), (0.7375, 0.1824),
    (0.8132, 0.1928), (0.8708, 0.2353), (0.5153, 0.3186), (0.5162, 0.3962), (0.5171, 0.4738),
    (0.5182, 0.5532), (0.4337, 0.6041), (0.4755, 0.6208), (0.5207, 0.6343), (0.5659, 0.6188),
    (0.6071, 0.6016), (0.2524, 0.3311), (0.2987, 0.3026), (0.3557, 0.3030), (0.4037, 0.3387),
    (0.3525, 0.3500), (0.2968, 0.3505), (0.6313, 0.3341), (0.6791, 0.2965), (0.7360, 0.2947),
    (0.7829, 0.3213), (0.7403, 0.3418), (0.6850, 0.3437), (0.3532, 0.7462), (0.4146, 0.7191),
    (0.4777, 0.7068), (0.5227, 0.7171), (0.5698, 0.7054), (0.6352, 0.7157), (0.6995, 0.7394),
    (0.6394, 0.8052), (0.5764, 0.8354), (0.5254, 0.8417), (0.4764, 0.8375), (0.4138, 0.8100),
    (0.3801, 0.7500), (0.4780, 0.7451), (0.5234, 0.7489), (0.5711, 0.7433), (0.6724, 0.7442),
    (0.5725, 0.7766), (0.5240, 0.7834), (0.4776, 0.7785),
])

# Depth (mm, toward the camera) of points 0..67; the right half is mirrored from the left.
_DEPTH = {
    **dict(enumerate([-62, -60, -56, -48, -37, -25, -14, -5, -1])),  # jaw 0..8
    17: -24, 18: -10, 19: -1, 20: 5, 21: 8,  # right brow, outer -> inner
    27: 7, 28: 15, 29: 24, 30: 34, 31: 12, 32: 16, 33: 19,  # nose
    36: -13, 37: -3, 38: -1, 39: -4, 40: -2, 41: -5,  # right eye
    48: -1, 49: 8, 50: 13, 51: 15, 59: 8, 58: 11, 57: 12,  # outer lips
    60: 1, 61: 10, 62: 12, 67: 9, 66: 11,  # inner lips
}

# Aux outlines (left half, x < 0, listed top-down or outside-in); mirrored to full arcs.
_FOREHEAD_HALF = [(-74, -18, -60), (-68, -42, -45), (-54, -62, -28), (-30, -75, -10)]
_FOREHEAD_MID = (0, -79, -3)
_HAIR_HALF = [(-82, 20, -78), (-88, -25, -66), (-84, -64, -50), (-64, -97, -30), (-33, -114, -12)]
_HAIR_MID = (0, -118, -6)
_HAIR_LONG = [(-88, 135, -70), (-91, 60, -80), (91, 60, -80), (88, 135, -70)]  # prepend 2, append 2
_NECK = [(-42, 85, -55), (-47, 200, -60), (47, 200, -60), (42, 85, -55)]
_EARS = [(-77, -14, -82), (-75, 30, -78), (77, -14, -82), (75, 30, -78)]  # top, bottom per ear


def _flip() -> np.ndarray:
    return LandmarkScheme.IBUG68.flip_permutation


def mean_shape() -> np.ndarray:
    """Symmetric 68x3 mean face in mm."""
    perm = _flip()
    xy = _MEAN_2D.copy()
    sym = np.empty_like(xy)
    sym[:, 0] = (xy[:, 0] - xy[perm, 0]) / 2
    sym[:, 1] = (xy[:, 1] + xy[perm, 1]) / 2
    eye_y = sym[[36, 39, 42, 45], 1].mean()
    sym[:, 1] -= eye_y
    shape = np.zeros((68, 3))
    shape[:, :2] = sym * MM_PER_UNIT
    for i, z in _DEPTH.items():
        shape[i, 2] = shape[perm[i], 2] = z
    closed = shape[[61, 62, 63, 65, 66, 67], 1].mean()
    shape[[61, 62, 63, 65, 66, 67], 1] = closed + np.array([-0.4, 0.0, -0.4, -0.4, 0.0, -0.4])
    return shape


def _mirror_mode(half: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """A symmetric displacement field from its image-left half (x mirrored for partners)."""
    perm = _flip()
    field = np.zeros((68, 3))
    for i, (dx, dy, dz) in half.items():
        field[i] = (dx, dy, dz)
        field[perm[i]] = (-dx if perm[i] != i else 0.0, dy, dz)
    return field


def _eye_close(pairs: list[tuple[int, int]], shape: np.ndarray) -> np.ndarray:
    """Upper lid travels 78 % of the gap, lower lid 22 %: at 1 the lids meet."""
    field = np.zeros((68, 3))
    for upper, lower in pairs:
        gap = shape[lower] - shape[upper]
        field[upper] = 0.78 * gap
        field[lower] = -0.22 * gap
    return field


def modes(shape: np.ndarray) -> dict[str, tuple[str, tuple[float, float], np.ndarray]]:
    """name -> (description, valid coefficient range, 68x3 displacement in mm at coefficient 1)."""
    x = shape[:, 0]
    y = shape[:, 1]
    jaw_w = {2: 0.3, 3: 0.6, 4: 0.85, 5: 1.0, 6: 1.0, 7: 1.0, 8: 0.0}
    jaw_width = np.zeros((68, 3))
    for i, w in jaw_w.items():
        jaw_width[i, 0] = 0.12 * x[i] * w
        jaw_width[16 - i, 0] = 0.12 * x[16 - i] * w
    eye_size = np.zeros((68, 3))
    for eye in (range(36, 42), range(42, 48)):
        idx = list(eye)
        centre = shape[idx, :2].mean(axis=0)
        eye_size[idx, :2] = 0.12 * (shape[idx, :2] - centre)
    face_length = np.zeros((68, 3))
    face_length[:, 1] = 0.10 * np.clip(y, 0.0, None)
    face_width = np.zeros((68, 3))
    face_width[:, 0] = 0.08 * x
    return {
        "mouth_open": ("jaw drops: lower lip and chin move down, corners a little", (0.0, 1.3), _mirror_mode({
            57: (0, 16, -1), 58: (0.5, 15, -1), 59: (1.0, 11, -1), 66: (0, 17, -1), 67: (0.5, 15.5, -1),
            48: (2.0, 5, -1), 60: (2.5, 6, -1), 49: (0, 1, 0), 50: (0, 1, 0), 51: (0, 1, 0),
            8: (0, 16, -3), 7: (0, 14.5, -2.5), 6: (0, 11, -2), 5: (1.0, 7, -1), 4: (0.5, 3.5, 0),
            3: (0, 1, 0),
        })),
        "smile": ("mouth corners out, up and back; negative is a frown", (-0.4, 1.0), _mirror_mode({
            48: (-7, -5, -3), 60: (-6, -4, -3), 49: (-3, -2, -1), 59: (-3.5, -2, -1),
            61: (-2.5, -1.5, -0.5), 67: (-2.5, -1.5, -0.5), 58: (-1.5, -0.5, 0),
        })),
        "eye_close_right": ("right eye (image left, 36-41) lids meet at 1", (0.0, 1.0),
                            _eye_close([(37, 41), (38, 40)], shape)),
        "eye_close_left": ("left eye (image right, 42-47) lids meet at 1", (0.0, 1.0),
                           _eye_close([(43, 47), (44, 46)], shape)),
        "brow_raise": ("both brows up; negative lowers them", (-0.5, 1.0), _mirror_mode({
            17: (0, -5, 0), 18: (0, -7, 0), 19: (0, -8, 0), 20: (0, -8, 0), 21: (0, -7, 0),
        })),
        "brow_furrow": ("inner brows down and together", (0.0, 1.0), _mirror_mode({
            21: (3, 4, 1), 20: (1.5, 2.5, 0.5), 19: (0.5, 1, 0),
        })),
        "face_width": ("whole face 8 % wider", (-1.0, 1.0), face_width),
        "jaw_width": ("lower contour 12 % wider toward the chin", (-1.0, 1.0), jaw_width),
        "face_length": ("everything below the eyes 10 % longer", (-1.0, 1.0), face_length),
        "nose_length": ("nose tip and base lower and further forward", (-1.0, 1.0), _mirror_mode({
            28: (0, 1, 1), 29: (0, 2.5, 2), 30: (0, 4, 4), 31: (0, 5, 0), 32: (0, 5, 1), 33: (0, 5, 1),
        })),
        "nose_width": ("alae wider", (-1.0, 1.0), _mirror_mode({31: (-4, 0, 0), 32: (-2, 0, 0)})),
        "eye_size": ("both eyes 12 % larger about their centres", (-1.0, 1.0), eye_size),
        "mouth_width": ("mouth wider", (-1.0, 1.0), _mirror_mode({
            48: (-5, 0, 0), 60: (-4.5, 0, 0), 49: (-2.5, 0, 0), 59: (-2.5, 0, 0),
            61: (-2, 0, 0), 67: (-2, 0, 0), 50: (-1, 0, 0), 58: (-1, 0, 0),
        })),
    }


def _arc(half: list[tuple[int, int, int]], mid: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Left half + midpoint + mirrored right half, one continuous outline left to right."""
    return [*half, mid, *[(-x, y, z) for x, y, z in reversed(half)]]


def _rows(array: np.ndarray, indent: str) -> str:
    lines = [f"{indent}[{', '.join(f'{v:.2f}' for v in row)}]" for row in np.asarray(array, float)]
    return "[\n" + ",\n".join(lines) + "\n" + indent[:-2] + "]"


def render_json() -> str:
    """The template as JSON text, one point per line so diffs stay readable."""
    shape = mean_shape()
    parts = [
        '{\n  "format_version": 1,\n  "units": "mm",\n',
        '  "axes": "x to image right (subject\'s left), y down, z toward the camera",\n',
        '  "source": "landmarks/synthetic/author_template.py",\n',
        f'  "head_centre": [0.0, 15.0, -85.0],\n  "mean_shape": {_rows(shape, "    ")},\n',
        '  "modes": {\n',
    ]
    items = []
    for name, (desc, (lo, hi), field) in modes(shape).items():
        items.append(
            f'    "{name}": {{\n      "description": "{desc}",\n      "range": [{lo}, {hi}],\n'
            f'      "displacement": {_rows(field, "        ")}\n    }}'
        )
    parts.append(",\n".join(items) + "\n  },\n")
    aux = {
        "forehead": _arc(_FOREHEAD_HALF, _FOREHEAD_MID),
        "hair": _arc(_HAIR_HALF, _HAIR_MID),
        "hair_long": _HAIR_LONG,
        "neck": _NECK,
        "ears": _EARS,
    }
    aux_text = ",\n".join(f'    "{k}": {_rows(np.array(v), "      ")}' for k, v in aux.items())
    parts.append('  "aux": {\n' + aux_text + "\n  }\n}\n")
    return "".join(parts)


if __name__ == "__main__":
    write_text(TEMPLATE_PATH, render_json())
    print(f"wrote {TEMPLATE_PATH}")
