"""The naive baseline the preprocessing benchmark compares against: read the whole wide parquet file
with pandas, then reshape, invert and resize it row by row (what most public Bengali.AI notebooks do)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def main(path: str, out: str, size: int) -> None:
    df = pd.read_parquet(path)
    images = np.empty((len(df), 1, size, size), dtype=np.uint8)
    for i in range(len(df)):
        img = 255 - df.iloc[i, 1:].to_numpy(dtype=np.uint8).reshape(137, 236)
        images[i, 0] = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    np.save(Path(out) / "images.npy", images)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
