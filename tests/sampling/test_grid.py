"""PNG contact sheets: cells hold the enlarged images, captions and metadata hold the labels."""

import numpy as np

from guided_diffusion.sampling.grid import PAD, grid_layout, make_grid, save_grid


def test_grid_cells_hold_the_upscaled_images_and_labels(tmp_path):
    rng = np.random.RandomState(0)
    imgs = rng.randint(0, 256, size=(10, 8, 8, 3)).astype(np.uint8)
    sheet, scale, cw, ch = make_grid(imgs, labels=np.arange(10), max_cols=4, min_cell=32)
    assert scale == 4 and cw == 32 and ch > 32
    rows, cols = grid_layout(10, 4)
    assert (rows, cols) == (3, 4)
    arr = np.asarray(sheet)
    assert arr.shape == (PAD + rows * (ch + PAD), PAD + cols * (cw + PAD), 3)
    for i in (0, 5, 9):
        r, c = divmod(i, cols)
        x0, y0 = PAD + c * (cw + PAD), PAD + r * (ch + PAD)
        cell = arr[y0 : y0 + 32, x0 : x0 + 32]
        assert np.array_equal(cell, imgs[i].repeat(4, 0).repeat(4, 1))
    path = str(tmp_path / "g.png")
    assert save_grid(path, imgs, np.arange(10) * 3) == 10
    from PIL import Image

    with Image.open(path) as im:
        assert im.text["labels"] == ",".join(str(3 * i) for i in range(10))




def test_string_captions_are_drawn_and_recorded_as_given(tmp_path):
    imgs = np.zeros((3, 8, 8, 3), np.uint8)
    captions = ["A", "0.50", "B"]
    sheet, _, cw, ch = make_grid(imgs, captions, max_cols=3, min_cell=32)
    arr = np.asarray(sheet)
    caption_rows = arr[PAD + 32 : PAD + ch]
    assert (caption_rows < 128).any()  # some text was drawn under the cells
    blank = np.asarray(make_grid(imgs, ["", "", ""], max_cols=3, min_cell=32)[0])
    assert not np.array_equal(arr, blank)
    path = str(tmp_path / "c.png")
    save_grid(path, imgs, captions, max_cols=3)
    from PIL import Image

    with Image.open(path) as im:
        assert im.text["labels"] == "A,0.50,B"
