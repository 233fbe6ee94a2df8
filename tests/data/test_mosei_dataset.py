"""CMU-MOSEI / MOSI registered as "mosei" and "mosi" (balgrad.data.readers._registry_av): the dataset
contract over the MulT and MMSA pickles, on fixtures in the released layout written by
test_mosei's writers."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch
from test_mosei import DIMS, T, _dump, _mmsa, _mult

import balgrad.data.readers._registry_av  # noqa: F401 - registers cremad, mosei, mosi
from balgrad.backbones._factory import BACKBONES, create_backbone
from balgrad.data import _kinds as kinds
from balgrad.data._catalog import DATASETS
from balgrad.data.disk._records import DataWarning, MissingSplitError
from balgrad.data.readers._mosei import MoseiSentiment, MosiSentiment
from balgrad.errors import ConfigError, DataError
from balgrad.evaluate._sentiment import dataset_readouts

MODALITIES = {"text": "features", "audio": "features", "visual": "features"}
# sentiment scores, and their classes worked out by hand: acc7 is round(clip(y, -3, 3))
# (half to even, as numpy and the field's acc7 round) shifted to 0..6; acc2 is y >= 0
SCORES = [-3.0, -2.6, -0.5, 0.0, 0.4, 0.5, 1.5, 2.5, 3.0, 0.0]
ACC7 = [0, 0, 3, 3, 3, 3, 5, 5, 6, 3]
ACC2 = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]


def build(name, root, split="train", skip_bad=False, **options):
    return DATASETS.build(name, (root, split), {"skip_bad": skip_bad}, options)


N = len(SCORES)


def mult_with_scores():
    """Every split holds N records; train's scores are SCORES, test's are SCORES reversed."""
    raw = _mult(N)
    raw["train"]["labels"] = np.array(SCORES, dtype=np.float32).reshape(N, 1, 1)
    raw["test"]["labels"] = np.array(SCORES[::-1], dtype=np.float32).reshape(N, 1, 1)
    return raw


@pytest.mark.parametrize("name, cls", [("mosei", MoseiSentiment), ("mosi", MosiSentiment)])
def test_registration_declares_three_feature_modalities(name, cls):
    entry = DATASETS.get(name)
    assert entry.load() is cls and entry.metadata["kind"] == "disk"
    assert entry.metadata["modalities"] == MODALITIES
    assert entry.metadata["modality_backbones"] == {m: "gru" for m in MODALITIES}
    assert all("gru" in BACKBONES[k] for k in entry.metadata["modalities"].values())
    assert DATASETS.defaults(name) == {
        "format": "auto",
        "file": None,
        "label": "acc7",
        "exclude_zero": False,
    }


@pytest.mark.parametrize(
    "name, file", [("mosei", "mosei_senti_data.pkl"), ("mosi", "mosi_data.pkl")]
)
def test_mult_splits_map_to_train_valid_test(tmp_path, name, file):
    raw = {"train": _mult(3)["train"], "valid": _mult(2)["valid"], "test": _mult(4)["test"]}
    _dump(tmp_path, raw, file)
    sizes = {split: len(build(name, tmp_path, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 2, "test": 4}
    assert len(build(name, tmp_path, "dev")) == 2
    with pytest.raises(MissingSplitError, match="no split 'extra'"):
        build(name, tmp_path, "extra")
    ds = build(name, tmp_path, "val")
    assert ds.split == "val" and ds.info.name == name and ds.info.modalities == MODALITIES
    ex = ds[1]
    assert list(ex.inputs) == ["text", "audio", "visual"] and ex.index == 1
    for m, key in (("text", "text"), ("audio", "audio"), ("visual", "vision")):
        x = ex.inputs[m]
        assert x["features"].shape == (T, DIMS[key]) and x["features"].dtype == torch.float32
        assert x["lengths"] == T and isinstance(x["lengths"], int)
        np.testing.assert_array_equal(x["features"].numpy(), raw["valid"][key][1])
    assert ex.label.dtype == torch.int64 and int(ex.label) == ds.labels[1]


def test_mmsa_lengths_and_format_detection(tmp_path):
    raw = _mmsa()
    _dump(tmp_path, raw, "unaligned_50.pkl")
    ds = build("mosei", tmp_path, "train")
    assert ds.path.name == "unaligned_50.pkl"
    assert [ds[i].inputs["audio"]["lengths"] for i in range(3)] == [T, 2, 1]
    assert [ds[i].inputs["visual"]["lengths"] for i in range(3)] == [3, T, 0]
    assert [ds[i].inputs["text"]["lengths"] for i in range(3)] == [T, T, T]
    assert ds[0].inputs["text"]["features"].shape == (T, 768)
    np.testing.assert_allclose(ds.scores, raw["train"]["regression_labels"])
    # auto prefers aligned_50.pkl to unaligned_50.pkl, and the MulT file to both
    _dump(
        tmp_path, {**raw, "train": {**raw["train"], "audio_lengths": [1, 1, 1]}}, "aligned_50.pkl"
    )
    assert build("mosei", tmp_path).path.name == "aligned_50.pkl"
    assert build("mosei", tmp_path)[0].inputs["audio"]["lengths"] == 1
    _dump(tmp_path, _mult(2), "mosei_senti_data.pkl")
    assert build("mosei", tmp_path).path.name == "mosei_senti_data.pkl"
    assert build("mosei", tmp_path, format="mmsa").path.name == "aligned_50.pkl"
    # a file of any name: its keys tell the format
    os.replace(tmp_path / "unaligned_50.pkl", tmp_path / "mine.pkl")
    assert build("mosei", tmp_path, file="mine.pkl")[2].inputs["visual"]["lengths"] == 0


def test_label_modes_and_exclude_zero_against_a_hand_made_pickle(tmp_path):
    _dump(tmp_path, mult_with_scores(), "mosei_senti_data.pkl")
    acc7 = build("mosei", tmp_path)
    assert acc7.labels == ACC7 and acc7.info.classes == ["-3", "-2", "-1", "0", "1", "2", "3"]
    assert [int(acc7[i].label) for i in range(len(acc7))] == ACC7
    acc2 = build("mosei", tmp_path, label="acc2")
    assert acc2.labels == ACC2 and acc2.info.classes == ["negative", "non-negative"]
    non_zero = build("mosei", tmp_path, label="acc2", exclude_zero=True)
    kept = [i for i, y in enumerate(SCORES) if y != 0]
    assert len(non_zero) == 8 and non_zero.labels == [ACC2[i] for i in kept]
    assert non_zero.info.classes == ["negative", "positive"]
    assert non_zero.ids == [acc2.ids[i] for i in kept]
    assert [non_zero[k].index for k in range(8)] == list(range(8))
    np.testing.assert_array_equal(
        non_zero[3].inputs["audio"]["features"], acc2[kept[3]].inputs["audio"]["features"]
    )
    assert len(build("mosei", tmp_path, exclude_zero=True)) == 8  # every mode, every split
    test = build("mosei", tmp_path, "test", exclude_zero=True)
    assert test.labels == [ACC7[i] for i in reversed(kept)]
    assert len(build("mosei", tmp_path, "val", exclude_zero=True)) == N  # no zeros there
    all_zero = mult_with_scores()
    all_zero["valid"]["labels"][:] = 0.0
    _dump(tmp_path, all_zero, "mosei_senti_data.pkl")
    with pytest.raises(DataError, match=r"split 'valid': no samples with a non-zero label"):
        build("mosei", tmp_path, "val", exclude_zero=True)


def test_the_acc7_readout_is_the_expected_score_against_the_real_labels(tmp_path):
    from scipy.stats import pearsonr
    from sklearn.metrics import f1_score

    _dump(tmp_path, mult_with_scores(), "mosei_senti_data.pkl")
    test = build("mosei", tmp_path, "test")  # its scores: SCORES reversed
    logits = torch.randn(6, 7, generator=torch.Generator().manual_seed(0)) * 2
    index = torch.tensor([9, 0, 4, 3, 7, 6])  # any order, as the loader hands them
    got = dataset_readouts(test, logits, index)
    truth = [SCORES[::-1][i] for i in index.tolist()]
    # expected score, sample by sample: sum over the classes -3..3 of p_c times c
    pred = []
    for row in logits.tolist():
        e = [math.exp(v) for v in row]
        pred.append(sum((c - 3) * w / sum(e) for c, w in enumerate(e)))
    assert got["mae"] == pytest.approx(sum(abs(p - y) for p, y in zip(pred, truth)) / 6)
    assert got["pearson"] == pytest.approx(pearsonr(pred, truth)[0])
    has0 = [(p >= 0) == (y >= 0) for p, y in zip(pred, truth)]
    assert got["acc2_non_negative"] == pytest.approx(100 * sum(has0) / 6)
    non0 = [(p > 0) == (y > 0) for p, y in zip(pred, truth) if y != 0]
    assert got["acc2_non_zero"] == pytest.approx(100 * sum(non0) / len(non0))
    assert got["f1_non_negative"] == pytest.approx(
        100 * f1_score([y >= 0 for y in truth], [p >= 0 for p in pred], average="weighted")
    )
    kept = [(y > 0, p > 0) for p, y in zip(pred, truth) if y != 0]
    assert got["f1_non_zero"] == pytest.approx(100 * f1_score(*zip(*kept), average="weighted"))
    assert "acc7" not in got and "accuracy" not in got  # the argmax's acc7 is the accuracy
    # a 2-class model has no score to read out; a wrong width is named
    acc2 = build("mosei", tmp_path, "test", label="acc2")
    assert dataset_readouts(acc2, logits[:, :2], index) == {}
    with pytest.raises(ConfigError, match=r"mosei: the acc7 read-out needs 7 logits"):
        dataset_readouts(test, logits[:, :5], index)


def test_feature_std_over_the_real_steps(tmp_path):
    raw = _mmsa()
    raw["train"]["vision"][:, :, 3] = 2.5  # a constant feature: std 1, as kinds.feature_std
    _dump(tmp_path, raw, "unaligned_50.pkl")
    ds = build("mosei", tmp_path)
    lengths = {"audio": [T, 2, 1], "visual": [3, T, 0], "text": [T, T, T]}
    for m, key in (("audio", "audio"), ("visual", "vision"), ("text", "text")):
        steps = np.concatenate([raw["train"][key][i, :n] for i, n in enumerate(lengths[m])])
        expected = steps.astype(np.float64).std(axis=0)
        expected[expected == 0] = 1.0
        got = ds.feature_std(m)
        assert got.shape == (raw["train"][key].shape[2],) and got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)

        # the generic path of kinds.feature_std, from the items, agrees
        class Items:
            def __len__(self):
                return len(ds)

            def __getitem__(self, i):
                return ds[i]

        np.testing.assert_allclose(kinds.feature_std(Items(), m).numpy(), expected, rtol=1e-5)
    assert ds.feature_std("visual")[3] == 1.0
    with pytest.raises(ConfigError, match="no modality 'vision'"):
        ds.feature_std("vision")


def test_fingerprint_follows_the_content_and_the_options(tmp_path):
    _dump(tmp_path, mult_with_scores(), "mosei_senti_data.pkl")
    fp = build("mosei", tmp_path).fingerprint
    assert build("mosei", tmp_path).fingerprint == fp
    assert build("mosei", tmp_path, "val").fingerprint != fp
    assert build("mosei", tmp_path, label="acc2").fingerprint != fp
    assert build("mosei", tmp_path, exclude_zero=True).fingerprint != fp
    changed = mult_with_scores()
    changed["train"]["text"][4, 2, 7] += 1.0
    _dump(tmp_path, changed, "new.pkl")
    os.replace(tmp_path / "new.pkl", tmp_path / "mosei_senti_data.pkl")  # read again
    again = build("mosei", tmp_path)
    assert again.fingerprint != fp
    assert float(again[4].inputs["text"]["features"][2, 7]) == pytest.approx(
        float(changed["train"]["text"][4, 2, 7])
    )


def test_bad_input_names_the_file_and_the_option(tmp_path):
    with pytest.raises(DataError, match=r"mosei: no pickle in .*mosei_senti_data\.pkl, aligned"):
        build("mosei", tmp_path)
    with pytest.raises(DataError, match=r"mosi: no pickle in .*looked for mosi_data\.pkl\b"):
        build("mosi", tmp_path, format="mult")
    with pytest.raises(DataError, match=r"option file='\.\./x\.pkl'.*outside the data folder"):
        build("mosei", tmp_path, file="../x.pkl")
    bad = mult_with_scores()
    bad["train"]["labels"][2, 0, 0] = 7.0
    _dump(tmp_path, bad, "mosei_senti_data.pkl")
    with pytest.raises(
        DataError, match=r"mosei_senti_data\.pkl split 'train' key 'labels' record 2"
    ):
        build("mosei", tmp_path)
    with pytest.warns(DataWarning, match="skipped 1 bad record"):
        assert len(build("mosei", tmp_path, skip_bad=True)) == len(SCORES) - 1
    (tmp_path / "odd.pkl").write_bytes(pickle.dumps({"train": {"x": np.zeros(1)}}))
    with pytest.raises(DataError, match=r"odd\.pkl: cannot tell the format.*option 'format'"):
        build("mosei", tmp_path, file="odd.pkl")
    with pytest.raises(ConfigError, match="'label'"):
        build("mosei", tmp_path, label="acc5")
    with pytest.raises(ConfigError, match="'format'"):
        build("mosei", tmp_path, format="csv")


@pytest.mark.parametrize("backbone", ["gru", "transformer"])
def test_the_registered_encoders_take_collated_items(tmp_path, backbone):
    _dump(tmp_path, _mmsa(), "unaligned_50.pkl")
    ds = build("mosei", tmp_path)
    items = [ds[i] for i in range(3)]
    for m, kind in ds.info.modalities.items():
        batch = {
            "features": torch.stack([ex.inputs[m]["features"] for ex in items]),
            "lengths": torch.tensor([ex.inputs[m]["lengths"] for ex in items]),
        }
        enc = create_backbone(kind, backbone, in_features=batch["features"].shape[-1], hidden=8)
        out = enc.eval()(batch)
        assert out.shape == (3, enc.out_dim) and torch.isfinite(out).all()
        if m == "visual":  # record 2 has no visual steps: the empty sequence encodes to 0
            assert torch.equal(out[2], torch.zeros(enc.out_dim))
