"""Draw a projected face with OpenCV on a small canvas.

Every feature is drawn from the projected landmarks themselves, so the image agrees with the
labels by construction. Points are continuous coordinates (pixel ``k`` spans ``[k, k+1)``);
OpenCV puts pixel centres at integers, hence ``_fp`` subtracts 0.5 and draws with a 4-bit
sub-pixel shift. OpenCV's anti-aliased polygon fill is sub-pixel in x but rounds vertex rows
in y, so the face is drawn at ``SUPERSAMPLE`` x resolution and area-averaged down: the row
rounding shrinks to +-0.25 px and stays zero-mean.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import cv2
import numpy as np

from landmarks.synthetic.appearance import Appearance, Color
from landmarks.synthetic.geometry import FaceParams, Projection

SHIFT = 4
SUPERSAMPLE = 2
_FP = float(1 << SHIFT)
_AA = cv2.LINE_AA
_NOISE_SIDE = 256
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False))], axis=1)


def _fp(points: np.ndarray) -> np.ndarray:
    """Continuous coordinates -> OpenCV fixed-point vertices (``shift=SHIFT``)."""
    return np.round((np.asarray(points) - 0.5) * _FP).astype(np.int32)


def fill_polygon(img: np.ndarray, poly: np.ndarray, color: Color | float) -> None:
    """Fill ``poly`` (continuous coordinates) into ``img``, anti-aliased at sub-pixel precision."""
    cv2.fillPoly(img, [_fp(poly)], color, _AA, SHIFT)


def _line(img: np.ndarray, poly: np.ndarray, color: Color, thickness: int, closed: bool = False) -> None:
    cv2.polylines(img, [_fp(poly)], closed, color, max(1, thickness), _AA, SHIFT)


def _px(mm: float, px_per_mm: float) -> int:
    """A stroke width in mm as whole pixels of the canvas being drawn on."""
    return max(1, round(mm * px_per_mm))


def _scaled(color: Color, factor: float) -> Color:
    return tuple(min(255.0, c * factor) for c in color)


def _ellipse(centre: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Polygon of the ellipse ``centre + a cos t + b sin t`` (handles any projected circle)."""
    return centre + _CIRCLE[:, :1] * a + _CIRCLE[:, 1:] * b


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in ``[-1, 1]``, float32 ``[size, size]`` each."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
    xs = np.ascontiguousarray(np.broadcast_to(axis[None, :], (size, size)))
    xs.flags.writeable = False
    return xs, np.ascontiguousarray(xs.T)


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed noise texture; images take random windows of it (cheaper than fresh noise)."""
    bank = np.random.default_rng(12345).standard_normal((_NOISE_SIDE, _NOISE_SIDE, 3)).astype(np.float32)
    bank.flags.writeable = False
    return bank


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    bank = _noise_bank()
    if size > _NOISE_SIDE:
        reps = -(-size // _NOISE_SIDE)
        bank = np.tile(bank, (reps, reps, 1))
    ox, oy = rng.integers(0, bank.shape[0] - size + 1, 2)
    return bank[oy:oy + size, ox:ox + size]


def _random_color(rng: np.random.Generator) -> Color:
    return tuple(float(v) for v in rng.uniform(0, 255, 3))


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradient + blotchy low-frequency colour + clutter shapes and lines.

    Built by upsampling a tiny random image: numpy broadcasting over a trailing RGB axis of
    length 3 is slow, cv2.resize is not.
    """
    corners = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
    small = cv2.resize(corners, (5, 5), interpolation=cv2.INTER_LINEAR)
    small += rng.uniform(-1, 1, (5, 5, 3)).astype(np.float32) * np.float32(rng.uniform(0, 60))
    small = cv2.resize(np.clip(small, 0, 255), (16, 16), interpolation=cv2.INTER_CUBIC)
    img = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    _clutter(img, rng, size)
    return img


def _clutter(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    for _ in range(rng.integers(2, 10)):
        kind = rng.integers(5)
        color = _random_color(rng)
        c = rng.uniform(-0.1, 1.1, 2) * size
        r = rng.uniform(0.04, 0.35) * size
        thick = -1 if rng.random() < 0.6 else int(rng.integers(1, 4))
        if kind == 0:
            cv2.circle(img, _fp(c), int(r * _FP), color, thick, _AA, SHIFT)
        elif kind == 1:
            box = cv2.boxPoints(((float(c[0]), float(c[1])), (float(r * 2), float(r * rng.uniform(0.2, 2))),
                                 float(rng.uniform(0, 180))))
            if thick < 0:
                fill_polygon(img, box, color)
            else:
                _line(img, box, color, thick, closed=True)
        elif kind == 2:
            end = c + rng.normal(0, 0.5, 2) * size
            _line(img, np.stack([c, end]), color, int(rng.integers(1, 5)))
        elif kind == 3:
            fill_polygon(img, c + rng.uniform(-r, r, (int(rng.integers(3, 7)), 2)), color)
        else:
            _stripes(img, rng, color, size)


def _stripes(img: np.ndarray, rng: np.random.Generator, color: Color, size: int) -> None:
    """Parallel lines across the canvas: strong edges the model must learn to ignore."""
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    normal = np.array([-direction[1], direction[0]])
    spacing = rng.uniform(0.04, 0.15) * size
    start = rng.uniform(0, size, 2)
    for k in range(int(rng.integers(3, 9))):
        p = start + normal * k * spacing
        _line(img, np.stack([p - direction * 2 * size, p + direction * 2 * size]), color, 1)


def _face_up(pts: np.ndarray) -> np.ndarray:
    """Unit vector of the face's own 'up' in the image (follows roll): strokes are built on it."""
    up = pts[27] - pts[8]
    return up / (np.linalg.norm(up) + 1e-9)


def _draw_head(img: np.ndarray, proj: Projection, look: Appearance) -> np.ndarray:
    """Hair, ears, neck, then the skin: convex hull of landmarks and forehead (the silhouette)."""
    aux = proj.aux
    if look.hair_style != "none":
        hair = aux["hair"]
        if look.hair_style == "long":
            hair = np.concatenate([aux["hair_long"][:2], hair, aux["hair_long"][2:]])
        fill_polygon(img, hair, look.hair)
    ears = aux["ears"]
    for top, bottom in (ears[:2], ears[2:]):
        major = (bottom - top) / 2
        minor = np.array([-major[1], major[0]]) * 0.45
        fill_polygon(img, _ellipse((top + bottom) / 2, major, minor), _scaled(look.skin, 0.88))
    fill_polygon(img, aux["neck"], _scaled(look.skin, 0.8))
    hull = cv2.convexHull(np.concatenate([proj.points, aux["forehead"]]).astype(np.float32))[:, 0]
    fill_polygon(img, hull, look.skin)
    return hull


def _draw_brows(img: np.ndarray, pts: np.ndarray, look: Appearance, px_mm: float, up: np.ndarray) -> None:
    taper = np.array([0.45, 0.8, 1.0, 1.0, 0.9])
    for idx, widths in ((slice(17, 22), taper), (slice(22, 27), taper[::-1])):
        brow = pts[idx]
        half = (widths * look.brow_thickness_mm * px_mm / 2)[:, None] * up
        fill_polygon(img, np.concatenate([brow + half, (brow - half)[::-1]]), look.brows)


def _draw_eye(img: np.ndarray, proj: Projection, k: int, look: Appearance, up: np.ndarray) -> None:
    """Sclera, iris clipped to the lids, lash line and crease; a closed eye is a lash line."""
    eye = proj.points[36 + 6 * k: 42 + 6 * k]
    ppm = proj.px_per_mm
    opening = np.dot((eye[1] + eye[2] - eye[4] - eye[5]) / 2, up)
    width = np.linalg.norm(eye[3] - eye[0])
    _line(img, eye[:4] + up * 0.3 * width, _scaled(look.skin, 0.82), _px(1.0, ppm))
    if opening > 0.3 * SUPERSAMPLE:
        fill_polygon(img, eye, look.sclera)
        _draw_iris(img, eye, proj.iris_centres[k], proj.iris_axes[k], look)
        _line(img, eye[[3, 4, 5, 0]], _scaled(look.skin, 0.65), _px(1.0, ppm))
    _line(img, eye[:4], (35.0, 28.0, 28.0), _px(2.2, ppm))


def _draw_iris(img: np.ndarray, eye: np.ndarray, centre: np.ndarray, axes: np.ndarray,
               look: Appearance) -> None:
    """Iris and pupil drawn on a small ROI copy, blended back through the eye-shape mask."""
    h, w = img.shape[:2]
    x0, y0 = np.maximum(np.floor(eye.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(eye.max(axis=0)).astype(int) + 2, (w, h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    origin = np.array([x0, y0], dtype=np.float64)
    roi = img[y0:y1, x0:x1]
    layer = roi.copy()
    mask = np.zeros(roi.shape[:2], np.uint8)
    fill_polygon(mask, eye - origin, 255)
    c = centre - origin
    fill_polygon(layer, _ellipse(c, axes[0], axes[1]), look.iris)
    fill_polygon(layer, _ellipse(c, axes[0] * 0.45, axes[1] * 0.45), (12.0, 10.0, 10.0))
    fill_polygon(layer, _ellipse(c - axes[0] * 0.35 - axes[1] * 0.35, axes[0] * 0.15, axes[1] * 0.15),
          (235.0, 235.0, 235.0))
    alpha = cv2.merge([mask, mask, mask]).astype(np.uint16)
    roi[:] = ((layer * alpha + roi * (255 - alpha) + 127) // 255).astype(np.uint8)


def _draw_nose(img: np.ndarray, proj: Projection, params: FaceParams, look: Appearance) -> None:
    """Nose volume (skin, hides what is behind it), side shadows, nostrils, profile line at yaw."""
    p = proj.points
    stroke = _px(1.5, proj.px_per_mm)
    fill_polygon(img, cv2.convexHull(p[27:36].astype(np.float32))[:, 0], look.skin)
    light_x = np.cos(look.light_angle)
    for alar, inner, side in ((31, 32, -1.0), (35, 34, 1.0)):
        lat = p[alar] - p[33]
        shade = 0.72 if side * light_x < 0 else 0.86
        side_line = np.stack([p[28] + lat * 0.3, p[29] + lat * 0.55, p[alar]])
        _line(img, side_line, _scaled(look.skin, shade), stroke)
        nostril_c = (p[alar] + p[inner]) / 2 + (p[29] - p[30]) * 0.08
        half = (p[inner] - p[alar]) * 0.4
        fill_polygon(img, _ellipse(nostril_c, half, np.array([-half[1], half[0]]) * 0.55), _scaled(look.skin, 0.3))
    _line(img, p[31:36], _scaled(look.skin, 0.7), stroke)
    tip = (p[35] - p[31]) * 0.14
    fill_polygon(img, _ellipse(p[30], tip, np.array([-tip[1], tip[0]])), _scaled(look.skin, 1.08))
    strength = min(1.0, max(0.0, (abs(params.yaw) - 15) / 35))
    if strength > 0:
        _line(img, p[27:31], _scaled(look.skin, 1 - 0.3 * strength), stroke)


def _draw_mouth(img: np.ndarray, pts: np.ndarray, look: Appearance, up: np.ndarray, ppm: float) -> None:
    """Lips; an open mouth shows a dark interior and upper teeth, a closed one a lip line."""
    fill_polygon(img, pts[48:60], look.lips)
    gap = np.dot(pts[62] - pts[66], up)
    if gap > 0.4 * SUPERSAMPLE:
        fill_polygon(img, pts[60:68], (55.0, 18.0, 22.0))
        drop = np.array([0.2, 1.0, 1.0, 1.0, 0.2])[:, None] * (-up) * (0.4 * gap)
        upper = pts[60:65]
        fill_polygon(img, np.concatenate([upper, (upper + drop)[::-1]]), (225.0, 220.0, 205.0))
    else:
        _line(img, pts[[48, 60, 61, 62, 63, 64, 54]], _scaled(look.lips, 0.5), _px(1.5, ppm))


def _occluders(img: np.ndarray, rng: np.random.Generator, pts: np.ndarray, look: Appearance) -> None:
    """Random objects over part of the face; the landmarks underneath keep their true place."""
    face = float(np.max(pts.max(axis=0) - pts.min(axis=0)))
    for _ in range(rng.integers(1, 3)):
        kind = rng.choice(4, p=(0.45, 0.25, 0.2, 0.1))
        centre = pts[rng.integers(68)] + rng.normal(0, 0.1, 2) * face
        r = rng.uniform(0.12, 0.32) * face
        color = _random_color(rng)
        if kind == 0:
            ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 10))))
            rad = r * rng.uniform(0.55, 1.0, len(ang))
            fill_polygon(img, centre + np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None], color)
        elif kind == 1:
            extent = (float(2 * r), float(2 * r * rng.uniform(0.3, 1.0)))
            box = cv2.boxPoints(((float(centre[0]), float(centre[1])), extent, float(rng.uniform(0, 180))))
            fill_polygon(img, box, color)
            _line(img, box[:2], _scaled(color, 0.6), SUPERSAMPLE)
        elif kind == 2:
            _hand(img, rng, centre, r, _scaled(look.skin, rng.uniform(0.85, 1.1)))
        else:
            fill_polygon(img, np.concatenate([pts[1:16], pts[[29]]]), _scaled(color, 0.3) if rng.random() < 0.3
                  else (215.0, 225.0, 235.0))


def _hand(img: np.ndarray, rng: np.random.Generator, centre: np.ndarray, r: float, color: Color) -> None:
    """A palm and fingers in skin colour: the classic hard occluder."""
    angle = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(angle), np.sin(angle)])
    n = np.array([-d[1], d[0]])
    fill_polygon(img, _ellipse(centre, d * r * 0.7, n * r * 0.55), color)
    finger = max(1, int(r * 0.28))
    for k in range(4):
        base = centre + d * r * 0.5 + n * r * (k - 1.5) * 0.3
        _line(img, np.stack([base, base + d * r * rng.uniform(0.6, 0.9)]), color, finger)
        _line(img, np.stack([base + d * r * 0.55, base + d * r * 0.6]), _scaled(color, 0.8), SUPERSAMPLE)


def _finish(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray, look: Appearance,
            face_px: float) -> np.ndarray:
    """Global light gradient, face lighting and edge shading, sensor noise, optional blur."""
    size = img.shape[0]
    xs, ys = _grid(size)
    g = rng.normal(0, 0.15, 2).astype(np.float32)
    k = max(3, int(face_px * 0.35) | 1)
    inside = mask.astype(np.float32) * np.float32(1 / 255)
    core = cv2.blur(mask, (k, k)).astype(np.float32) * np.float32(1 / 255)
    lx, ly = np.float32(np.cos(look.light_angle)), np.float32(np.sin(look.light_angle))
    directional = np.float32(look.light_strength) * (lx * xs + ly * ys)
    face_light = directional - np.float32(look.edge_shade) * (1 - core)
    mult = np.float32(rng.uniform(0.7, 1.2)) + g[0] * xs + g[1] * ys + inside * face_light
    out = img.astype(np.float32)
    out *= cv2.merge([mult, mult, mult])
    out += _noise(rng, size) * np.float32(rng.uniform(0, 9))
    out = np.clip(out, 0, 255, out=out).astype(np.uint8)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.4, 1.0))
    return out


def _upscaled(proj: Projection, factor: int) -> Projection:
    """The same projection on a canvas ``factor`` times larger (continuous coordinates scale)."""
    return replace(
        proj,
        points=proj.points * factor,
        aux={k: v * factor for k, v in proj.aux.items()},
        iris_centres=proj.iris_centres * factor,
        iris_axes=proj.iris_axes * factor,
        px_per_mm=proj.px_per_mm * factor,
    )


def render(proj: Projection, params: FaceParams, look: Appearance, rng: np.random.Generator,
           size: int, occlude: bool) -> np.ndarray:
    """The full image, uint8 RGB ``[size, size, 3]``; the face is drawn supersampled."""
    ss = SUPERSAMPLE
    canvas = cv2.resize(background(rng, size), None, fx=ss, fy=ss, interpolation=cv2.INTER_NEAREST)
    big = _upscaled(proj, ss)
    hull = _draw_head(canvas, big, look)
    pts = big.points
    up = _face_up(pts)
    for k in (0, 1):
        _draw_eye(canvas, big, k, look, up)
    _draw_brows(canvas, pts, look, big.px_per_mm, up)
    _draw_mouth(canvas, pts, look, up, big.px_per_mm)
    _draw_nose(canvas, big, params, look)
    if occlude:
        _occluders(canvas, rng, pts, look)
    img = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    mask = np.zeros((size, size), np.uint8)
    fill_polygon(mask, hull / ss, 255)
    face_px = float(np.max(proj.points.max(axis=0) - proj.points.min(axis=0)))
    return _finish(img, rng, mask, look, face_px)
