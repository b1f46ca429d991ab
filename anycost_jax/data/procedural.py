"""The embedded procedural dataset ("anycost_shapes"): colored shapes on a gradient.

Each example is a scene drawn from a handful of discrete and continuous choices:
- background: a linear gradient between two of four muted tones (dark slate, steel,
  light gray, sand) at a random angle;
- one to three shapes, painted in order (later ones on top), each of
  - kind: a filled disc, a filled square at a random rotation, or a ring (an annulus whose
    hole shows what is beneath);
  - color: red, green, blue or yellow (saturated, so they stand out from the background);
  - size: half-width 12-25% of the image side; position: anywhere that keeps it in frame.

A person can tell at a glance whether a generator's samples look like this (clean edges,
flat saturated colors, round vs square vs ring, smooth background), and a small GAN picks up
the color statistics and blob layout within minutes.

A scene is defined in unit coordinates, so `render_example(i, 256)` and
`render_example(i, 32)` show the same picture at two sizes. Edges are antialiased
analytically: each shape's signed distance (in pixels) is turned into coverage by a one-pixel
linear ramp. The scene parameters come from `hashing.uniform(seed, index, ...)`, so an example
is a pure function of (seed, index), independent of the NumPy version and of the order in
which examples are drawn.
"""
import numpy as np

from anycost_jax.data import hashing

BACKGROUNDS = np.array([(38, 42, 58), (92, 108, 132), (200, 202, 206), (226, 214, 186)], np.float32)
COLORS = np.array([(214, 39, 40), (44, 160, 44), (31, 90, 220), (245, 196, 22)], np.float32)
COLOR_NAMES = ('red', 'green', 'blue', 'yellow')
KINDS = ('disc', 'square', 'ring')
MAX_SHAPES = 3
_STREAM = 0x5A4E  # separates these draws from other users of hashing with the same seed
_PER_SHAPE = 7
_N_DRAWS = 4 + MAX_SHAPES * _PER_SHAPE


def scene(index: int, seed: int = 0) -> dict:
    """The parameters of example `index`: background and shapes, in unit coordinates."""
    u = hashing.uniform(seed, _STREAM, index, np.arange(_N_DRAWS))
    bg0 = int(u[0] * 4)
    bg1 = (bg0 + 1 + int(u[1] * 3)) % 4  # two different tones
    shapes = []
    for k in range(1 + int(u[3] * MAX_SHAPES)):
        v = u[4 + k * _PER_SHAPE: 4 + (k + 1) * _PER_SHAPE]
        r = 0.12 + 0.13 * v[2]
        margin = r * (np.sqrt(2.0) if int(v[0] * 3) == 1 else 1.0) + 0.02  # a rotated square's corners reach r*sqrt2
        margin = min(margin, 0.5)
        shapes.append(dict(
            kind=KINDS[int(v[0] * 3)], color=int(v[1] * 4), radius=float(r),
            center=(float(margin + (1 - 2 * margin) * v[3]), float(margin + (1 - 2 * margin) * v[4])),
            angle=float(v[5] * np.pi / 2), thickness=float(r * (0.35 + 0.15 * v[6]))))
    return dict(background=(bg0, bg1), gradient_angle=float(u[2] * 2 * np.pi), shapes=shapes)


def pixel_grid(resolution: int):
    """Pixel centers in unit coordinates, ``(x [1, R], y [R, 1])``; x to the right, y down."""
    if resolution < 1:
        raise ValueError(f'resolution must be positive, got {resolution}')
    t = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    return t[None, :], t[:, None]


def shape_distance(sh: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (unit coordinates, negative inside) of each pixel to shape ``sh``."""
    dx, dy = x - np.float32(sh['center'][0]), y - np.float32(sh['center'][1])
    r = np.float32(sh['radius'])
    if sh['kind'] == 'disc':
        return np.sqrt(dx * dx + dy * dy) - r
    if sh['kind'] == 'ring':
        half = np.float32(sh['thickness'] / 2)
        return np.abs(np.sqrt(dx * dx + dy * dy) - (r - half)) - half
    # square: exact box distance in the square's own frame
    ca, sa = np.float32(np.cos(sh['angle'])), np.float32(np.sin(sh['angle']))
    qx, qy = np.abs(ca * dx + sa * dy) - r, np.abs(-sa * dx + ca * dy) - r
    return np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2) + np.minimum(np.maximum(qx, qy), 0)


def render_example(index: int, resolution: int, seed: int = 0, colors: np.ndarray = COLORS,
                   background=None, by_kind: bool = False) -> np.ndarray:
    """Example `index` of the dataset with this `seed`, drawn at `resolution`: uint8 [H, W, 3].
    ``colors``: the shapes' palette (``COLORS``; the image-to-image data repaints with others),
    indexed by each shape's color draw, or with ``by_kind`` by its kind (``KINDS`` order);
    ``background``: ``(tone, tone, angle)`` in place of the scene's own (the paired image-to-image
    tasks fix it, so that the target is a function of the input)."""
    s = scene(index, seed)
    x, y = pixel_grid(resolution)
    t0, t1, a = (*s['background'], s['gradient_angle']) if background is None else background
    g = (x - 0.5) * np.float32(np.cos(a)) + (y - 0.5) * np.float32(np.sin(a))
    g = np.clip(g * np.float32(1 / np.sqrt(2)) + 0.5, 0, 1)[..., None]  # 0..1 across the diagonal
    c0, c1 = BACKGROUNDS[t0], BACKGROUNDS[t1]
    img = c0 + (c1 - c0) * g
    for sh in s['shapes']:
        cover = np.clip(0.5 - shape_distance(sh, x, y) * np.float32(resolution), 0, 1)[..., None]
        color = colors[KINDS.index(sh['kind'])] if by_kind else colors[sh['color']]
        img = img + (color - img) * cover
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def describe(index: int, seed: int = 0) -> str:
    """A one-line caption of example `index`, e.g. 'red disc, blue ring on slate/sand'."""
    s = scene(index, seed)
    tones = ('slate', 'steel', 'gray', 'sand')
    parts = [f"{COLOR_NAMES[sh['color']]} {sh['kind']}" for sh in s['shapes']]
    return f"{', '.join(parts)} on {tones[s['background'][0]]}/{tones[s['background'][1]]}"
