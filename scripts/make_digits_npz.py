"""
Dev tool: regenerate `guided_diffusion/data/digits.npz` (run once; the npz is committed).

The data are the 1,797 8x8 handwritten digits that scikit-learn bundles as
`sklearn/datasets/data/digits.csv.gz` (the test part of the UCI "Optical Recognition of
Handwritten Digits" set, E. Alpaydin and C. Kaynak, 1998, CC BY 4.0). scikit-learn is not a
dependency: fetch its wheel without installing it and point this script at it::

    pip download --no-deps scikit-learn -d /tmp/skl
    python scripts/make_digits_npz.py /tmp/skl/scikit_learn-*.whl

Any of a wheel, the extracted `digits.csv.gz`, or nothing (then `import sklearn` is tried) works.
Output keys: `images` uint8 [1797, 8, 8] (ink intensity 0..16), `labels` uint8 [1797].
"""

import argparse
import gzip
import io
import os
import sys
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from guided_diffusion.runtime.fileio import atomic_write  # noqa: E402

CSV_IN_WHEEL = "sklearn/datasets/data/digits.csv.gz"


def read_csv_gz_bytes(source):
    if source is None:
        import sklearn

        source = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "data", "digits.csv.gz")
    if source.endswith(".whl"):
        with zipfile.ZipFile(source) as z:
            return z.read(CSV_IN_WHEEL)
    with open(source, "rb") as f:
        return f.read()


def parse(csv_gz):
    table = np.loadtxt(io.StringIO(gzip.decompress(csv_gz).decode("ascii")), delimiter=",", dtype=np.int64)
    if table.shape != (1797, 65):
        raise ValueError(f"expected a 1797 x 65 table, got {table.shape}")
    images = table[:, :64].reshape(-1, 8, 8)
    labels = table[:, 64]
    if images.min() < 0 or images.max() > 16 or set(labels.tolist()) != set(range(10)):
        raise ValueError("unexpected value range in digits table")
    return images.astype(np.uint8), labels.astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=None, help="scikit-learn wheel or digits.csv.gz")
    parser.add_argument("--out", default=os.path.join(REPO, "guided_diffusion", "data", "digits.npz"))
    args = parser.parse_args()
    images, labels = parse(read_csv_gz_bytes(args.source))
    atomic_write(args.out, lambda f: np.savez_compressed(f, images=images, labels=labels))
    print(f"wrote {args.out}: {len(labels)} digits, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
