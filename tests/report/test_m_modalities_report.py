"""The report of a run with three and four named modalities, from hand-written eval.json
files with known numbers; and old (image, text) eval.json files still report."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from figure_data import record_figures
from m_runfolders import AV_TEXT, scores_of, write_m_run
from report_runfolders import eval_payload, write_run
from scipy import stats

import balgrad.report._figures
import balgrad.report._plots
from balgrad.errors import BalgradError
from balgrad.evaluate._protocol import summarize, sweep_gaps
from balgrad.report._build import build_report
from balgrad.report._runfiles import RunFileError, read_eval

METHODS = ["joint", "balgrad", "ogm_ge"]
SEEDS = [0, 1, 2]
NAMES = list(AV_TEXT)


def _csv(path):
    with open(path, newline="") as f:
        return {r["condition"]: r for r in csv.DictReader(f)}


def _expected(method_index: int, key: str) -> list[float]:
    """Row ``key`` of method number ``method_index`` per seed, computed from the scores."""
    out = []
    for s in SEEDS:
        sc = scores_of(AV_TEXT, method_index, s)
        kind, _, m = key.partition("_")
        if m in ("avg", "gap"):
            vals = [sc[f"{kind}_{n}"] for n in NAMES]
            out.append(np.mean(vals) if m == "avg" else np.ptp(vals))
        else:
            out.append(sc[key])
    return out


# -- summarize / sweep_gaps -----------------------------------------------------------
def test_summarize_three_modalities_by_hand():
    conds = {
        "full": {"acc": 70.0},
        "missing_audio": {"acc": 40.0},
        "missing_visual": {"acc": 64.0},
        "missing_text": {"acc": 52.0},
        "noisy_audio": {"acc": 75.0},
        "noisy_visual": {"acc": 60.0},
        "only_audio": {"acc": 30.0},
        "only_visual": {"acc": 45.0},
        "only_text": {"acc": 20.0},
    }
    s = summarize(conds, "acc")
    assert s["missing_avg"] == pytest.approx(52.0) and s["missing_gap"] == 24.0
    # noise on two of the three: Avg and ΔGap over those two
    assert s["noisy_avg"] == pytest.approx(67.5) and s["noisy_gap"] == 15.0
    assert "noisy_text" not in s
    assert s["noisy_audio_negative_transfer"] is True
    assert s["missing_visual_negative_transfer"] is False
    assert [k for k in s if k.startswith("only_") and "negative" not in k] == [
        "only_audio",
        "only_visual",
        "only_text",
    ]
    assert summarize(conds, "acc", ["text", "audio", "visual"])["missing_gap"] == 24.0
    sweep = [{"ratio": 0.5, **{f"missing_{m}": {"acc": v} for m, v in zip(NAMES, (1.0, 7.0, 4.0))}}]
    assert sweep_gaps(sweep, "acc") == [(0.5, 6.0)]


def test_two_modalities_bitwise_as_before():
    rng = random.Random(3)
    for _ in range(200):
        a, b, f = (rng.uniform(0, 100) for _ in range(3))
        conds = {"full": {"x": f}, "missing_image": {"x": a}, "missing_text": {"x": b}}
        s = summarize(conds, "x")
        assert s["missing_avg"] == (a + b) / 2 and s["missing_gap"] == abs(a - b)
        row = {"ratio": 0.1, "missing_image": {"x": a}, "missing_text": {"x": b}}
        assert sweep_gaps([row], "x") == [(0.1, abs(a - b))]


# -- a three-modality run folder ------------------------------------------------------
@pytest.fixture(scope="module")
def three(tmp_path_factory):
    run = write_m_run(tmp_path_factory.mktemp("m3") / "run", METHODS, SEEDS)
    with pytest.MonkeyPatch.context() as mp:
        figs = record_figures(mp, [balgrad.report._figures, balgrad.report._plots])
        out = build_report(run)
    return run, out, figs


def test_table_rows_and_values(three):
    run, _, _ = three
    rows = _csv(run / "table.csv")
    assert list(rows) == [
        "full",
        *(f"missing_{m}" for m in NAMES),
        "missing_avg",
        "missing_gap",
        *(f"noisy_{m}" for m in NAMES),
        "noisy_avg",
        "noisy_gap",
        *(f"only_{m}" for m in NAMES),
    ]
    for i, method in enumerate(METHODS):
        for key in rows:
            vals = _expected(i, key)
            assert float(rows[key][f"{method}_mean"]) == pytest.approx(np.mean(vals), abs=1e-4)
            assert float(rows[key][f"{method}_std"]) == pytest.approx(
                np.std(vals, ddof=1), abs=1e-4
            )
    md = (run / "table.md").read_text()
    for label in (
        "| Missing audio |",
        "| Missing ΔGap |",
        "| Noisy audio (SNR = 10 dB) |",
        "| Noisy visual (σ = 0.5) |",
        "| Noisy text (p = 0.3) |",
        "| Only audio |",
        "| Only text |",
    ):
        assert label in md, label
    assert list(_csv(run / "ablation.csv")) == [
        "full",
        *(f"missing_{m}" for m in NAMES),
        "missing_avg",
        "missing_gap",
    ]


def test_paired_intervals_of_the_new_rows(three):
    run, _, _ = three
    payload = json.loads((run / "table.json").read_text())
    assert payload["modalities"] == AV_TEXT
    assert payload["noise"] == {"audio": 10.0, "visual": 0.5, "text": 0.3}
    for key in ("only_text", "only_audio", "missing_gap", "noisy_avg"):
        diffs = np.array(_expected(1, key)) - np.array(_expected(0, key))
        cell = payload["paired"]["balgrad"][key]
        sem = diffs.std(ddof=1) / np.sqrt(len(diffs))
        if sem == 0:
            low = high = diffs.mean()
        else:
            low, high = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=sem)
        assert cell["values"] == pytest.approx(diffs.tolist())
        assert (cell["low"], cell["high"]) == pytest.approx((low, high)), key
    md = (run / "table.md").read_text().split("Change versus")[1]
    assert "| Only visual |" in md and "| Missing ΔGap |" in md and "| Missing audio |" not in md


def test_dominance_from_the_only_scores(three):
    _, out, _ = three
    text = out["summary"]
    joint = {m: np.mean(_expected(0, f"only_{m}")) for m in NAMES}
    assert max(joint, key=joint.get) == "text" and min(joint, key=joint.get) == "audio"
    spread = [max(v) - min(v) for v in zip(*(_expected(0, f"only_{m}") for m in NAMES))]
    assert (
        f"The **text** modality dominated: alone it scored highest, "
        f"{joint['text'] - joint['audio']:.1f} points above the weakest, audio "
        f"(spread max − min {np.mean(spread):.1f} ± {np.std(spread, ddof=1):.1f} points)."
    ) in text
    assert "The same modality scored highest alone in 3 of 3 seeds." in text
    assert f"Each modality alone (every other one missing): audio {joint['audio']:.1f} ± " in text
    line = next(x for x in text.splitlines() if x.startswith("- Under BalGrad:"))
    bal = [max(v) - min(v) for v in zip(*(_expected(1, f"only_{m}") for m in NAMES))]
    change = np.array(bal) - np.array(spread)
    assert "highest text" in line
    assert (
        f"spread {np.mean(bal):.1f} ± {np.std(bal, ddof=1):.1f} points ({change.mean():+.1f} ["
        in line
    )
    assert line.startswith("- Under BalGrad: audio ")
    assert "- Under OGM-GE:" in text
    assert "ΔGap = max − min over the modalities" in text and "|missing image" not in text


def test_loss_spread_and_figures(three):
    run, out, figs = three
    # loss_<m> = 2 − (0.5 + j) k/n + 0.01 seed: the tail means differ by the slopes only
    n, k = 30, 6
    tail = {
        m: np.mean([2.0 - (0.5 + j) * s / n for s in range(n - k, n)]) for j, m in enumerate(NAMES)
    }
    spread = max(tail.values()) - min(tail.values())
    assert out["loss_gaps"]["joint"]["mean"] == pytest.approx(spread)
    assert (
        f"- Baseline: max − min = {spread:.3f} ± 0.000 (highest: the audio loss; lowest: the text loss)."
        in out["summary"]
    )
    for name in ("condition_bars.png", "loss_curves.png", "gap_vs_ratio.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    bars = figs["condition_bars.png"]["axes"][0]
    assert bars["legend"] == ["Full", "Audio only", "Visual only", "Text only"]
    heights = [h for _, _, h in bars["patches"]]
    assert heights[: len(METHODS)] == pytest.approx(
        [np.mean(_expected(i, "full")) for i in range(3)]
    )
    assert heights[len(METHODS) : 2 * len(METHODS)] == pytest.approx(
        [np.mean(_expected(i, "only_audio")) for i in range(3)]
    )
    loss = figs["loss_curves.png"]["axes"][0]
    assert [ln["label"] for ln in loss["lines"]] == [
        "audio loss $L_{audio}$",
        "visual loss $L_{visual}$",
        "text loss $L_l$",  # the paper's name for the text tower's loss
    ]
    assert loss["lines"][0]["y"][0] == pytest.approx(2.01)  # mean over seeds of 2 + 0.01 s
    gap = figs["gap_vs_ratio.png"]["axes"]
    assert len(gap) == 1 + len(NAMES)
    assert gap[0]["lines"][0]["y"][-1] == pytest.approx(np.mean(_expected(0, "missing_gap")))
    assert gap[1]["title"].startswith("audio missing")
    joint = next(ln for ln in gap[1]["lines"] if ln["label"] == "Baseline")
    assert joint["y"][-1] == pytest.approx(np.mean(_expected(0, "missing_audio")))
    assert joint["y"][0] == pytest.approx(np.mean(_expected(0, "full")))  # r = 0


def test_four_modalities_row_count(tmp_path):
    mods = {"audio": "audio", "visual": "video", "flow": "video", "text": "text"}
    run = write_m_run(tmp_path / "m4", ["joint", "balgrad"], [0, 1], mods, noise={})
    out = build_report(run, draw=False)
    rows = _csv(run / "table.csv")
    assert len(rows) == 1 + 2 * (4 + 2) + 4
    assert "| Noisy flow |" in (run / "table.md").read_text()  # no level known: bare label
    assert "Only flow" in (run / "table.md").read_text()
    assert "modality dominated" in out["summary"]


# -- old and mixed eval.json ------------------------------------------------------------
def test_old_eval_json_reports_as_image_text(make_run, tmp_path):
    old = make_run(["joint", "balgrad"], seeds=(0, 1), name="old")
    new = make_run(["joint", "balgrad"], seeds=(0, 1), name="new")
    for path in new.glob("*/seed*/eval.json"):
        rec = json.loads(path.read_text())
        rec["protocol"] = {
            "modalities": {"image": "image", "text": "text"},
            "noise": {"image": 0.5, "text": 0.5},
        }
        path.write_text(json.dumps(rec))
    build_report(old, draw=False)
    build_report(new, draw=False)
    for name in ("table.md", "table.csv", "table.json", "report.md", "ablation.csv"):
        assert (old / name).read_text() == (new / name).read_text(), name
    assert "| Noisy image |" in (old / "table.md").read_text()


def test_runs_of_different_modalities_are_refused(tmp_path):
    run = write_m_run(tmp_path / "mixed", ["joint"], [0])
    write_run(tmp_path / "mixed", ["balgrad"], [0])
    (tmp_path / "mixed" / "config.yaml").write_text(
        "dataset: avt\nmethods: [joint, balgrad]\nseeds: [0]\nmethod_options: {}\n"
    )
    with pytest.raises(BalgradError, match="has modalities"):
        build_report(run, draw=False)


def test_a_three_modality_sweep_is_checked(tmp_path):
    run = write_m_run(tmp_path / "r", ["joint"], [0])
    path = run / "joint" / "seed0" / "eval.json"
    assert read_eval(path)["sweep"][0]["missing_visual"]
    rec = json.loads(path.read_text())
    del rec["sweep"][1]["missing_text"]
    path.write_text(json.dumps(rec))
    with pytest.raises(RunFileError, match=r"sweep\[1\]\.missing_text"):
        read_eval(path)
    rec["protocol"]["modalities"] = ["audio"]
    path.write_text(json.dumps(rec))
    with pytest.raises(RunFileError, match="protocol.modalities"):
        read_eval(path)
    assert eval_payload  # the (image, text) writer stays importable beside the M one


# -- two modalities other than (image, text); M > 2 without only_<m>; undefined scores ----
def test_audio_visual_pair_names_its_modalities(tmp_path):
    av = {"audio": "audio", "visual": "video"}

    def scores(mods, i, s):
        # audio alone (visual missing) 30 + s, visual alone (audio missing) 60 − s
        return {"full": 80.0 + i, "missing_audio": 60.0 - s, "missing_visual": 30.0 + s,
                "noisy_audio": 50.0, "noisy_visual": 45.0}  # fmt: skip

    run = write_m_run(tmp_path / "av", ["joint"], [0, 1], av, {"audio": 0.0, "visual": 1.0}, scores)
    with pytest.MonkeyPatch.context() as mp:
        figs = record_figures(mp, [balgrad.report._figures, balgrad.report._plots])
        text = build_report(run)["summary"]
    md = (run / "table.md").read_text()
    assert "| Noisy audio (SNR = 0 dB) |" in md and "| Noisy visual (σ = 1) |" in md
    assert "Only" not in md
    assert "with the audio removed (visual only) it was 59.5 ± 0.7%" in text
    assert "The **visual** modality dominated" in text and "the audio-only score was" in text
    assert "ΔGap = |missing audio − missing visual| in points" in text
    assert "Loss-curve gap: mean of L_audio − L_visual" in text
    bars = figs["condition_bars.png"]["axes"][0]["legend"]
    assert bars == ["Full", "Audio only (visual missing)", "Visual only (audio missing)"]
    loss = figs["loss_curves.png"]["axes"][0]["title"]
    assert "gap $L_{audio} - L_{visual}$" in loss


def test_three_modalities_without_only_conditions(tmp_path):
    def scores(mods, i, s):
        out = scores_of(mods, i, s)
        return {k: v for k, v in out.items() if not k.startswith("only_")}

    run = write_m_run(tmp_path / "r", ["joint", "balgrad"], [0, 1], scores=scores)
    text = build_report(run, draw=False)["summary"]
    assert "Only" not in (run / "table.md").read_text()
    # missing_audio is the lowest missing score: audio is the modality relied on
    assert "The only_<m> conditions were not evaluated" in text
    assert "The **audio** modality dominated: the model lost the most without it" in text


def test_an_undefined_score_makes_the_gap_undefined(tmp_path):
    def scores(mods, i, s):
        out = scores_of(mods, i, s)
        out["missing_visual"] = None  # e.g. AUROC of a split with one class
        return out

    run = write_m_run(tmp_path / "r", ["joint"], [0], scores=scores)
    build_report(run, draw=False)
    rows = _csv(run / "table.csv")
    assert rows["missing_visual"]["joint_mean"] == "n/a"
    assert rows["missing_gap"]["joint_mean"] == "n/a"
    assert rows["missing_avg"]["joint_mean"] == "n/a"
    assert float(rows["noisy_gap"]["joint_mean"]) == pytest.approx(
        np.ptp([scores_of(AV_TEXT, 0, 0)[f"noisy_{m}"] for m in NAMES])
    )
