"""The ``grid`` verb's picture: log-mel thumbnails of notes swept along two directions, one
labelled PNG."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # Pillow is imported when a grid is drawn
    import PIL.Image

MAX_GRID_STEPS = 16
"""Most values per axis (a grid of MAX_GRID_STEPS**2 notes)."""
# magma-like colour map anchors (value 0 .. 1 -> RGB)
_CMAP = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109],
                  [252, 253, 191]], dtype=np.float64)


# ---- grid --------------------------------------------------------------------------------------
def grid_values(lo: float, hi: float, steps: int) -> np.ndarray:
    """The coefficient values along each axis: float64 [steps] from lo to hi."""
    return np.linspace(lo, hi, steps)


def grid_coefficients(a: int, b: int, values: np.ndarray) -> np.ndarray:
    """Coefficients of every grid cell, row-major with the top row first: float32
    [steps*steps, max(a, b) + 1]; column j sets direction a to ``values[j]``, row i sets
    direction b to ``values[steps - 1 - i]`` (positive values at the top)."""
    n = len(values)
    c = np.zeros((n * n, max(a, b) + 1), dtype=np.float32)
    for i in range(n):
        for j in range(n):
            c[i * n + j, a] = values[j]
            c[i * n + j, b] = values[n - 1 - i]
    return c


def _colormap(x: np.ndarray) -> np.ndarray:
    """[..] values in 0..1 -> uint8 [.., 3] RGB."""
    pos = np.linspace(0.0, 1.0, len(_CMAP))
    rgb = [np.interp(x, pos, _CMAP[:, ch]) for ch in range(3)]
    return np.stack(rgb, axis=-1).round().astype(np.uint8)


GRID_MARGINS = (72, 24, 12, 40)
"""Left, top, right, bottom margins of the grid image in pixels (room for the labels)."""
GRID_GAP = 4


def grid_size(steps: int, thumb: int) -> tuple[int, int]:
    """(width, height) in pixels of a grid image."""
    left, top, right, bottom = GRID_MARGINS
    side = steps * thumb + (steps - 1) * GRID_GAP
    return left + side + right, top + side + bottom


def grid_image(logmel: np.ndarray, values: np.ndarray, a: int, b: int, thumb: int,
               title: str) -> PIL.Image.Image:
    """Compose log-mel thumbnails into one labelled PIL image.

    Args:
        logmel: [steps*steps, T, M] log mel power per cell (row-major, top row first), T time
            frames, M mel bins. Shown with time to the right, low frequencies at the bottom, on a
            colour scale shared by all cells (1st to 99.9th percentile).
        values: [steps] coefficient values of each axis.
        a, b: direction indices on the horizontal and vertical axes.
        thumb: thumbnail side in pixels.
        title: text above the grid.
    Returns:
        RGB ``PIL.Image`` of size :func:`grid_size`.
    """
    from PIL import Image, ImageDraw

    n = len(values)
    lo, hi = np.percentile(logmel, [1.0, 99.9])
    scaled = np.clip((logmel - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    img = Image.new("RGB", grid_size(n, thumb), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    left, top, _, _ = GRID_MARGINS
    for cell, spec in enumerate(scaled):
        i, j = divmod(cell, n)
        tile = Image.fromarray(_colormap(spec.T[::-1])).resize((thumb, thumb),
                                                               Image.Resampling.BOX)
        img.paste(tile, (left + j * (thumb + GRID_GAP), top + i * (thumb + GRID_GAP)))
    side = n * thumb + (n - 1) * GRID_GAP
    for k, v in enumerate(values):
        x = left + k * (thumb + GRID_GAP) + thumb // 2
        draw.text((x, top + side + 4), f"{v:+.2g}", fill=(0, 0, 0), anchor="ma")
        y = top + (n - 1 - k) * (thumb + GRID_GAP) + thumb // 2
        draw.text((left - 6, y), f"{v:+.2g}", fill=(0, 0, 0), anchor="rm")
    draw.text((left + side // 2, top + side + 22), f"direction {a} ->", fill=(0, 0, 0),
              anchor="ma")
    draw.text((4, top), f"direction {b}", fill=(0, 0, 0), anchor="la")
    draw.text((left, 4), title, fill=(0, 0, 0), anchor="la")
    return img
