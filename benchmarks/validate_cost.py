"""What ``DiskDataset.validate()`` costs, next to decoding every image (``skip_bad=True``).

Writes ``--images`` JPEGs of ``--size`` (a smooth gradient plus noise, so they compress
like photos: ~30-60 KB at 512x384) as a generic dataset in a temporary folder, then
times, in one run: construction (one ``stat`` per image), ``validate()`` (headers and
file ends only) and construction with ``skip_bad=True`` (every image decoded). Prints
seconds per 10k images and the ratio. The files were just written, so they are in the
page cache: this is the CPU cost; on a cold network disk, the open/read latency adds.

    python benchmarks/validate_cost.py --images 2000 --workers 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from balgrad.data.readers import load_dataset_from_disk


def write_dataset(root: Path, n: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    w, h = size
    ramp = np.linspace(0, 200, w, dtype=np.float32)[None, :, None]
    (root / "images").mkdir(parents=True)
    records = []
    for i in range(n):
        noise = rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
        arr = np.clip(ramp + noise + (i % 50), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{i}.jpg", "JPEG", quality=90)
        records.append({"image": f"images/{i}.jpg", "text": f"caption {i}", "label": i % 2})
    (root / "test.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (root / "classes.txt").write_text("a\nb\n")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, nargs=2, default=(512, 384), metavar=("W", "H"))
    ap.add_argument("--workers", type=int, default=None, help="threads (default: auto)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root, args.images, tuple(args.size))
        kb = sum(p.stat().st_size for p in (root / "images").iterdir()) / args.images / 1024
        opts = {"workers": args.workers}
        ds = None

        def construct():
            nonlocal ds
            ds = load_dataset_from_disk("generic", root, "test", **opts)

        t_construct = timed(construct)
        t_validate = timed(lambda: ds.validate())
        t_decode = timed(
            lambda: load_dataset_from_disk("generic", root, "test", skip_bad=True, **opts)
        )
    per10k = 10_000 / args.images
    print(
        f"{args.images} JPEGs of {args.size[0]}x{args.size[1]} (~{kb:.0f} KB), workers={args.workers or 'auto'}"
    )
    print(f"construction (stat)     {t_construct * per10k:8.2f} s per 10k images")
    print(f"validate() (headers)    {t_validate * per10k:8.2f} s per 10k images")
    print(f"skip_bad (full decode)  {t_decode * per10k:8.2f} s per 10k images")
    print(f"validate / full decode  {t_validate / t_decode:8.3f}")


if __name__ == "__main__":
    main()
