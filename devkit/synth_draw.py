"""Drawing a chest-radiograph-like image from a plan (:mod:`devkit.synth_plan`): body, lung fields,
mediastinum, ribs, noise, and the findings (blobs, tubes, haze) in the plan's pixel coordinates."""

from __future__ import annotations

import numpy as np

from devkit.synth_plan import Anatomy, Blob, Ellipse, Haze, ImagePlan, Mark, Tube

def render_image(plan: ImagePlan, *, findings: bool = True) -> np.ndarray:
    """The stored pixel values (uint16, ``size`` x ``size``) of a plan.

    ``findings=False`` renders the same image (same anatomy, same noise) without any finding:
    the difference between the two is exactly what the ground truth describes.
    """
    size = plan.size
    coords = np.arange(size, dtype=np.float32) + np.float32(0.5)
    x, y = coords[None, :], coords[:, None]  # broadcast to (size, size) only where needed
    noise_rng = np.random.default_rng(list(plan.noise_seed))
    image = _chest(plan.anatomy, x, y, _texture(noise_rng, size))
    if findings:
        for finding in plan.findings:
            if finding.present:
                for mark in finding.marks:
                    _draw(image, mark, x, y)
    image *= np.float32(plan.gain)
    noise = noise_rng.standard_normal((size, size), dtype=np.float32)
    image += noise * np.float32(plan.noise_sigma)
    # Headroom above 1.0: a device over the spine must not clip, so the ground truth stays visible.
    scale = np.float32(plan.max_value / 1.35)
    np.multiply(image, scale, out=image)
    np.clip(image, 0, plan.max_value, out=image)
    return np.rint(image).astype(np.uint16)


def _soft_inside(r: np.ndarray, edge: float) -> np.ndarray:
    """~1 inside r < 1, ~0 outside, with a smooth edge (width ~ ``edge`` in r units)."""
    return np.float32(0.5) + np.float32(0.5) * np.tanh((np.float32(1.0) - r) / np.float32(edge))


def _ellipse_r(e: Ellipse, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    dx = (x - np.float32(e.cx)) / np.float32(e.ax)
    dy = (y - np.float32(e.cy)) / np.float32(e.ay)
    return np.sqrt(dx * dx + dy * dy)


def _lung_field(e: Ellipse, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Elliptic above the centre, squarer below (an L4 norm): the bases end in sharp
    # costophrenic angles, as in a real radiograph, instead of a round bottom.
    dx = (x - np.float32(e.cx)) / np.float32(e.ax)
    dy = (y - np.float32(e.cy)) / np.float32(e.ay)
    dx2, dy2 = dx * dx, dy * dy
    r = np.where(dy > 0, np.sqrt(np.sqrt(dx2 * dx2 + dy2 * dy2)), np.sqrt(dx2 + dy2))
    return _soft_inside(r, 0.06)


def _chest(a: Anatomy, x: np.ndarray, y: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """Attenuation-like picture (about 0..1, brighter = denser) of a frontal chest.

    Organs with a soft edge are evaluated only inside a window where they are not ~0: at 256 px
    that halves the rendering time.
    """
    size = texture.shape[0]
    body = _soft_inside(_ellipse_r(a.body, x, y), 0.04)
    spine = np.exp(-0.5 * ((x - np.float32(a.spine_x)) / np.float32(a.spine_width)) ** 2)
    image = np.float32(0.04) + body * (
        np.float32(0.55)
        + np.float32(0.14) * spine
        + np.float32(0.06) * (y / np.float32(size))  # denser towards the diaphragm and abdomen
    )

    lungs = np.zeros_like(image)
    for lung in a.lungs:  # at 1.4 semi-axes the field is < 1e-5
        rows, cols = _window(lung.cx, lung.cy, 1.4 * lung.ax, 1.4 * lung.ay, size)
        lungs[rows, cols] += _lung_field(lung, x[:, cols], y[rows, :])
    image -= np.float32(0.36) * lungs
    # the heart lies in front of the medial lung bases: where it is, the lung is not seen
    rows, cols = _window(a.heart.cx, a.heart.cy, 2 * a.heart.ax, 2 * a.heart.ay, size)
    heart = _soft_inside(_ellipse_r(a.heart, x[:, cols], y[rows, :]), 0.15)
    image[rows, cols] += heart * (np.float32(0.36 * 0.85) * lungs[rows, cols] + np.float32(0.04) * body[rows, cols])

    lateral = x - np.float32(a.spine_x)
    phase = (y - np.float32(a.rib_curve) * lateral * lateral) / np.float32(a.rib_spacing) + np.float32(a.rib_phase)
    ribs = np.float32(0.5) + np.float32(0.5) * np.cos(np.float32(2 * np.pi) * phase)
    ribs *= ribs
    ribs *= ribs  # cos^4: thin bands rather than a sinusoid
    image += ribs * (np.float32(0.045) * lungs + np.float32(0.045 * 0.15) * body)
    image += np.float32(0.06) * lungs * texture  # vessels and interstitium: lungs are not flat

    reach = 4 * a.clavicle_width
    for x0, y0, x1, y1 in a.clavicles:
        rows, cols = _window((x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2 + reach, abs(y1 - y0) / 2 + reach, size)
        band = _segment_band((x0, y0, x1, y1), a.clavicle_width, x[:, cols], y[rows, :])
        image[rows, cols] += np.float32(0.1) * band * body[rows, cols]
    return image


def _window(cx: float, cy: float, half_x: float, half_y: float, size: int) -> tuple[slice, slice]:
    """Rows and columns of the pixels within ``half_x``/``half_y`` of a centre, in the image."""
    c0, c1 = max(0, int(cx - half_x)), min(size, int(np.ceil(cx + half_x)) + 1)
    r0, r1 = max(0, int(cy - half_y)), min(size, int(np.ceil(cy + half_y)) + 1)
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def _segment_band(segment: tuple[float, float, float, float], width: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gaussian profile (sigma ``width``) across the segment, fading out past its ends."""
    x0, y0, x1, y1 = segment
    vx, vy = x1 - x0, y1 - y0
    length2 = vx * vx + vy * vy
    t = ((x - np.float32(x0)) * np.float32(vx) + (y - np.float32(y0)) * np.float32(vy)) / np.float32(length2)
    dx = x - np.float32(x0) - t * np.float32(vx)
    dy = y - np.float32(y0) - t * np.float32(vy)
    across = np.exp((dx * dx + dy * dy) * np.float32(-0.5 / width**2))
    # 1 along the middle of the segment, ramping to 0 over its last eighths
    along = np.clip(np.float32(1.0) - np.abs(t - np.float32(0.5)) * np.float32(2.0), 0, np.float32(0.25))
    along *= np.float32(4.0)
    return across * along


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random field (about -1..1): two octaves of bilinearly upsampled Gaussian noise."""
    field = np.zeros((size, size), dtype=np.float32)
    for cells, weight in ((6, 0.6), (18, 0.4)):
        grid = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
        # Separable linear interpolation by indexing. Not `weights @ grid @ weights.T`: that is
        # BLAS, whose threads spin on these tiny products and double the CPU time of a run.
        u = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * np.float32(cells / size)
        i = np.minimum(u.astype(np.intp), cells - 1)
        f = (u - i)[:, None]
        rows = grid[i] * (1 - f) + grid[i + 1] * f  # (size, cells + 1)
        f = f.T
        field += np.float32(weight) * (rows[:, i] * (1 - f) + rows[:, i + 1] * f)
    return field


def _draw(image: np.ndarray, mark: Mark, x: np.ndarray, y: np.ndarray) -> None:
    if isinstance(mark, Blob):
        gx = np.exp(-0.5 * ((x - np.float32(mark.cx)) / np.float32(mark.sx)) ** 2)
        gy = np.exp(-0.5 * ((y - np.float32(mark.cy)) / np.float32(mark.sy)) ** 2)
        image += np.float32(mark.amplitude) * (gy * gx)  # separable: two 1-D Gaussians
    elif isinstance(mark, Tube):
        _draw_tube(image, mark)
    else:
        _draw_haze(image, mark, x, y)


def _draw_tube(image: np.ndarray, tube: Tube) -> None:
    """Anti-aliased band around the polyline, computed only in its bounding box."""
    pts = np.asarray(tube.points, dtype=np.float32)
    reach = tube.half_width + 1.0
    size = image.shape[0]
    c0 = max(0, int(np.floor(pts[:, 0].min() - reach)))
    c1 = min(size, int(np.ceil(pts[:, 0].max() + reach)) + 1)
    r0 = max(0, int(np.floor(pts[:, 1].min() - reach)))
    r1 = min(size, int(np.ceil(pts[:, 1].max() + reach)) + 1)
    px = np.arange(c0, c1, dtype=np.float32)[None, :] + np.float32(0.5)
    py = np.arange(r0, r1, dtype=np.float32)[:, None] + np.float32(0.5)
    dist2 = np.full((r1 - r0, c1 - c0), np.inf, dtype=np.float32)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:], strict=True):
        vx, vy = bx - ax, by - ay
        t = ((px - ax) * vx + (py - ay) * vy) / max(float(vx * vx + vy * vy), 1e-6)
        np.clip(t, 0, 1, out=t)
        dx, dy = px - (ax + t * vx), py - (ay + t * vy)
        np.minimum(dist2, dx * dx + dy * dy, out=dist2)
    coverage = np.clip(np.float32(tube.half_width + 0.5) - np.sqrt(dist2), 0, 1)
    image[r0:r1, c0:c1] += np.float32(tube.amplitude) * coverage


def _draw_haze(image: np.ndarray, haze: Haze, x: np.ndarray, y: np.ndarray) -> None:
    x0, y0, x1, y1 = haze.box
    c0, c1 = int(np.floor(x0)), int(np.ceil(x1))
    r0, r1 = int(np.floor(y0)), int(np.ceil(y1))
    bx, by = x[:, c0:c1], y[r0:r1, :]
    rise = np.clip((by - np.float32(haze.top)) / np.float32(haze.bottom - haze.top), 0, 1) ** np.float32(0.7)
    lung = _lung_field(haze.lung, bx, by)
    # hard window on the ROI: nothing of the effusion is drawn outside its rectangle
    inside = (bx >= x0) & (bx <= x1) & (by >= y0) & (by <= y1)
    image[r0:r1, c0:c1] += np.float32(haze.amplitude) * rise * lung * inside
