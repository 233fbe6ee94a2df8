"""Write the two-modality golden values: run ONCE, on the code before modalities became
named (commit 94872c8), and never regenerate afterwards.

For every strategy and option set, on (image, text) models of several shapes, it records
the gradient each step writes to ``.grad`` and the step's statistics, in float64, over
three steps with a plain SGD update in between (so running means, EMAs and step-seeded
noise are exercised). ``test_m2_golden.py`` replays the same steps on today's code and
asserts equality to 1e-12: the M-modality code reduces exactly to the old one.

    PYTHONPATH=src python tests/strategies/golden/make_m2_golden.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden.cases import CASES, run_case  # noqa: E402


def main() -> None:
    out = Path(__file__).parent
    tensors, meta = {}, {}
    for case in CASES:
        result = run_case(case, legacy=True)
        meta[case.key] = {"error": result.error, "stats": result.stats, "lrs": result.lrs}
        for step, grads in enumerate(result.grads):
            for name, g in grads.items():
                tensors[f"{case.key}|{step}|{name}"] = g.contiguous()
    save_file(tensors, str(out / "m2_golden.safetensors"))
    (out / "m2_golden.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"{len(CASES)} cases, {len(tensors)} tensors")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
