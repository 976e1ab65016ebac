"""
PNG contact sheet of the first samples of a batch, with each sample's label as a caption.

Cells are enlarged by an integer nearest-neighbour factor so small images stay visible; when
labels are given, a caption strip under each cell shows them and the PNG's text metadata holds
the full label list ("labels", comma separated).
"""

import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from ..runtime.fileio import atomic_write

CAPTION_HEIGHT = 12
PAD = 2


def grid_layout(n, max_cols=8):
    """
    :param n: number of cells (> 0).
    :param max_cols: at most this many columns.
    :return: (rows, cols).
    """
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def caption_text(value):
    """A cell caption: an integer label as its digits, a string as it is."""
    return value if isinstance(value, str) else str(int(value))


def make_grid(images, labels=None, max_images=64, max_cols=8, min_cell=64):
    """
    Tile images into one PIL image.

    :param images: uint8 array [N, H, W, 3].
    :param labels: optional captions [N]: int labels, or strings (e.g. interpolation lambdas).
    :param max_images: keep only the first this many.
    :param max_cols: columns of the grid.
    :param min_cell: enlarge each image by an integer factor until its side is at least this.
    :return: (PIL.Image, scale, cell_w, cell_h) where a cell is scale*W by scale*H pixels plus
             its caption, placed at (PAD + c*(cell_w+PAD), PAD + r*(cell_h+PAD)).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
    n = min(len(images), max_images)
    if n == 0:
        raise ValueError("no images to tile")
    h, w = images.shape[1:3]
    scale = max(1, -(-min_cell // max(h, w)))
    caption = CAPTION_HEIGHT if labels is not None else 0
    cell_w, cell_h = w * scale, h * scale + caption
    rows, cols = grid_layout(n, max_cols)
    sheet = Image.new("RGB", (PAD + cols * (cell_w + PAD), PAD + rows * (cell_h + PAD)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = PAD + c * (cell_w + PAD), PAD + r * (cell_h + PAD)
        big = images[i].repeat(scale, axis=0).repeat(scale, axis=1)
        sheet.paste(Image.fromarray(big), (x0, y0))
        if labels is not None:
            draw.text((x0 + 1, y0 + h * scale), caption_text(labels[i]), fill=(0, 0, 0))
    return sheet, scale, cell_w, cell_h


def save_grid(path, images, labels=None, **kwargs):
    """
    Write the grid of `make_grid` as a PNG at `path` (atomically), labels also in its metadata.

    :return: the number of images shown.
    """
    sheet = make_grid(images, labels, **kwargs)[0]
    n = min(len(images), kwargs.get("max_images", 64))
    info = PngInfo()
    if labels is not None:
        info.add_text("labels", ",".join(caption_text(v) for v in list(labels)[:n]))
    atomic_write(path, lambda f: sheet.save(f, format="PNG", pnginfo=info))
    return n
