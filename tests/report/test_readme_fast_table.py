"""benchmarks/readme_tables.py's fast-vs-exact table, from hand-written eval.json files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from report_runfolders import eval_payload

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "readme_tables", ROOT / "benchmarks/readme_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(run_dir: Path, fast_full: list[float]) -> None:
    for seed, ff in enumerate(fast_full):
        for method, full in (("joint", 90.0), ("balgrad", 80.0), ("balgrad_fast", ff)):
            folder = run_dir / method / f"seed{seed}"
            folder.mkdir(parents=True)
            payload = eval_payload(method, seed, full, 70.0, 50.0, sweep=False)
            (folder / "eval.json").write_text(json.dumps(payload))


def test_fast_table_gives_each_method_and_the_paired_difference(tmp_path):
    script = load_script()
    # fast − exact on Full: 1, 2, 3 -> mean 2, std 1, t(0.975, 2) = 4.302653 -> ±2.48
    write_run(tmp_path / "digits", [81.0, 82.0, 83.0])
    # the same every seed: a zero-width interval away from 0
    write_run(tmp_path / "fashion", [75.0, 75.0, 75.0])
    text = script.fast_table({"digits": tmp_path / "digits", "fashion": tmp_path / "fashion"})
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in text.splitlines()}
    digits_full = rows[("digits", "Full")].split("|")
    assert digits_full[3].strip() == "90.00 ± 0.00"
    assert digits_full[4].strip() == "80.00 ± 0.00"
    assert digits_full[5].strip() == "82.00 ± 1.00"
    assert digits_full[6].strip() == "+2.00 [-0.48, +4.48] n.s."
    assert rows[("fashion", "Full")].split("|")[6].strip() == "-5.00 [-5.00, -5.00]"
    # the missing rows are equal by construction: no change
    assert rows[("digits", "Missing Avg")].split("|")[6].strip().startswith("+0.00")
    assert text.startswith("accuracy (%), 3 seeds")


def test_readme_edits_made_while_the_jobs_train_are_kept(tmp_path, monkeypatch):
    script = load_script()
    readme = tmp_path / "README.md"
    blocks = "".join(
        f"<!-- readme_tables:{n} -->\nold {n}\n<!-- /readme_tables:{n} -->\n"
        for n in ("digits", "keypad")
    )
    readme.write_text("intro\n" + blocks)

    def fake_run(name, out, cache, reuse, flags=None):
        # someone edits README.md while this job trains
        readme.write_text(readme.read_text().replace("intro", f"intro, edited during {name}"))
        (out / f"readme-{name}").mkdir(parents=True, exist_ok=True)
        (out / f"readme-{name}" / "table.md").write_text(f"new {name}\n")
        return out / f"readme-{name}"

    monkeypatch.setattr(script, "run", fake_run)
    argv = ["--only", "digits", "keypad", "--out", str(tmp_path / "runs"), "--readme", str(readme)]
    assert script.main(argv) == 0
    text = readme.read_text()
    assert text.startswith("intro, edited during keypad, edited during digits\n")
    assert "new digits" in text and "new keypad" in text and "old" not in text
    # a README without one of the blocks fails before any job runs
    readme.write_text("no blocks\n")
    monkeypatch.setattr(script, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    with pytest.raises(SystemExit, match="has no block <!-- readme_tables:digits -->"):
        script.main(argv)
