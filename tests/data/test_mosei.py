"""CMU-MOSEI / MOSI pickles (MulT and MMSA formats) (issue 16, part 5); the sentiment
read-outs are tested in tests/evaluate/test_sentiment.py.

Fixtures are a few records pickled in the released layout: a dict of the three splits,
each a dict of numpy arrays under the keys the official loaders read.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from balgrad.data.disk._records import DataWarning
from balgrad.data.readers import _mosei as mosei
from balgrad.errors import DataError

T, DIMS = 4, {"vision": 35, "audio": 74, "text": 300}


def _mult_split(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    d = {k: rng.normal(size=(n, T, dim)).astype(np.float32) for k, dim in DIMS.items()}
    d["labels"] = rng.uniform(-3, 3, size=(n, 1, 1)).astype(np.float32)
    d["id"] = np.array([[f"vid{i}", f"{i}.5", f"{i + 1}.5"] for i in range(n)])
    return d


def _mult(n: int = 3) -> dict:
    return {split: _mult_split(n, s) for s, split in enumerate(mosei.SPLITS)}


def _mmsa(n: int = 3, bert_len: int = 6) -> dict:
    data = {}
    for s, split in enumerate(mosei.SPLITS):
        rng = np.random.default_rng(10 + s)
        mask = (np.arange(bert_len)[None, :] < np.arange(2, 2 + n)[:, None]).astype(np.float32)
        ids = rng.integers(100, 30000, size=(n, bert_len)).astype(np.float32) * mask
        data[split] = {
            "raw_text": [f"sentence {i}" for i in range(n)],
            "audio": rng.normal(size=(n, T, 5)).astype(np.float32),
            "vision": rng.normal(size=(n, T, 20)).astype(np.float32),
            "text": rng.normal(size=(n, T, 768)).astype(np.float32),
            "text_bert": np.stack([ids, mask, np.zeros_like(mask)], axis=1),
            "id": [f"clip{i}$_${i}" for i in range(n)],
            "regression_labels": rng.uniform(-3, 3, size=n).astype(np.float32),
            "audio_lengths": [T, 2, 1][:n],
            "vision_lengths": [3, T, 0][:n],
        }
    return data


def _dump(
    tmp_path: Path, obj, name: str = "data.pkl", protocol: int = pickle.HIGHEST_PROTOCOL
) -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_mult_pickle_reads_the_released_layout(tmp_path, protocol):
    raw = _mult()
    raw["train"]["audio"][0, 1, 2] = -np.inf
    raw["train"]["audio"][1, 0, :3] = np.nan
    # the cleaning is not silent: one warning names the split, the modality and the count
    with pytest.warns(DataWarning, match=r"split 'train': set non-finite .* audio .* 4 of 888"):
        splits = mosei.load_mult_pickle(_dump(tmp_path, raw, "mosei_senti_data.pkl", protocol))
    assert list(splits) == list(mosei.SPLITS)
    train = splits["train"]
    assert len(train) == 3
    assert {m: a.shape for m, a in train.features.items()} == {
        "audio": (3, T, 74),
        "visual": (3, T, 35),
        "text": (3, T, 300),
    }
    assert train.cleaned == {"audio": 4, "visual": 0, "text": 0}
    assert train.features["audio"][0, 1, 2] == 0 and np.isfinite(train.features["audio"]).all()
    # everything else is the file's value, untouched
    keep = np.isfinite(raw["train"]["audio"])
    np.testing.assert_array_equal(train.features["audio"][keep], raw["train"]["audio"][keep])
    np.testing.assert_array_equal(train.features["visual"], raw["train"]["vision"])
    np.testing.assert_array_equal(train.labels, raw["train"]["labels"].reshape(3))
    assert train.ids == ["vid0/0.5/1.5", "vid1/1.5/2.5", "vid2/2.5/3.5"]
    assert train.lengths == {}


def test_mult_ids_as_bytes_and_absent(tmp_path):
    raw = _mult(2)
    raw["train"]["id"] = np.array([[b"a", b"1"], [b"b", b"2"]], dtype=object)
    del raw["valid"]["id"]
    splits = mosei.load_mult_pickle(_dump(tmp_path, raw))
    assert splits["train"].ids == ["a/1", "b/2"]
    assert splits["valid"].ids == ["0", "1"]


def test_a_pickle_that_calls_a_function_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "RAN"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    raw = _mult(1)
    raw["train"]["labels"] = Evil()
    path = _dump(tmp_path, raw)
    with pytest.raises(
        DataError, match=r"data\.pkl: refused to unpickle global (os|posix|nt)\.system"
    ):
        mosei.load_mult_pickle(path)
    assert not marker.exists()


def test_a_pickle_of_another_class_is_refused(tmp_path):
    path = _dump(tmp_path, {"train": Path("x")})
    with pytest.raises(DataError, match=r"refused to unpickle global pathlib\."):
        mosei.safe_load_pickle(path)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a readable pickle"),
        (pickle.dumps([1, 2])[:-3], "not a readable pickle"),
        (pickle.dumps([1, 2]), "expected a dict of splits"),
    ],
)
def test_not_a_dataset_pickle(tmp_path, data, message):
    path = tmp_path / "x.pkl"
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"x\.pkl.*{message}"):
        mosei.load_mult_pickle(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.pkl: the pickle file is missing"):
        mosei.load_mult_pickle(tmp_path / "nope.pkl")


def _broken(edit):
    raw = _mult()
    edit(raw)
    return raw


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.pop("valid"), r"split 'valid' is missing"),
        (lambda r: r["test"].pop("audio"), r"split 'test': key 'audio' is missing"),
        (
            lambda r: r["train"].update(vision=np.zeros((3, 35))),
            r"split 'train' key 'vision': expected a rank-3",
        ),
        (
            lambda r: r["train"].update(text=np.zeros((2, T, 300))),
            r"split 'train': the modalities hold different",
        ),
        (
            lambda r: r["valid"].update(labels=np.zeros((3, 2, 1))),
            r"split 'valid' key 'labels': expected one label",
        ),
        (
            lambda r: r["train"]["labels"].__setitem__((1, 0, 0), np.nan),
            r"'train' key 'labels' record 1: label nan",
        ),
        (
            lambda r: r["test"]["labels"].__setitem__((2, 0, 0), 3.5),
            r"'test' key 'labels' record 2: label 3.5",
        ),
        (
            lambda r: r["train"].update(audio=np.full((3, T, 74), "x")),
            r"key 'audio': expected real numbers",
        ),
        (
            lambda r: r["train"].update(id=np.array(["a", "b"])),
            r"split 'train' key 'id': 2 ids for 3 records",
        ),
        (
            lambda r: r["valid"].update(id=np.array([b"ok", b"\xff", b"ok"], dtype=object)),
            r"split 'valid' key 'id' record 1: the id is not UTF-8",
        ),
    ],
)
def test_bad_content_names_file_split_key_and_record(tmp_path, edit, message):
    path = _dump(tmp_path, _broken(edit), "mosi_data.pkl")
    with pytest.raises(DataError, match=r"mosi_data\.pkl.*" + message):
        mosei.load_mult_pickle(path)


def test_mmsa_pickle_features_and_lengths(tmp_path):
    raw = _mmsa()
    raw["test"]["vision"][2, 0, 0] = np.inf
    with pytest.warns(DataWarning, match=r"split 'test': .* visual \(key 'vision'\) 1 of 240"):
        splits = mosei.load_mmsa_pickle(_dump(tmp_path, raw, "unaligned_50.pkl"))
    train = splits["train"]
    assert {m: a.shape for m, a in train.features.items()} == {
        "audio": (3, T, 5),
        "visual": (3, T, 20),
        "text": (3, T, 768),
    }
    np.testing.assert_array_equal(train.labels, raw["train"]["regression_labels"])
    np.testing.assert_array_equal(train.lengths["audio"], [T, 2, 1])
    np.testing.assert_array_equal(train.lengths["visual"], [3, T, 0])
    assert train.ids == ["clip0$_$0", "clip1$_$1", "clip2$_$2"]
    assert splits["test"].cleaned["visual"] == 1


def test_mmsa_bert_inputs_give_text_lengths_from_the_mask(tmp_path):
    raw = _mmsa()
    for split in raw.values():  # the aligned file has no lengths
        del split["audio_lengths"], split["vision_lengths"]
    splits = mosei.load_mmsa_pickle(_dump(tmp_path, raw, "aligned_50.pkl"), text="text_bert")
    valid = splits["valid"]
    assert valid.features["text"].shape == (3, 3, 6)
    np.testing.assert_array_equal(valid.features["text"], raw["valid"]["text_bert"])
    assert valid.lengths.keys() == {"text"}
    np.testing.assert_array_equal(valid.lengths["text"], [2, 3, 4])


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda r: r["train"].update(audio_lengths=[T, 2, T + 1]),
            r"'train' key 'audio_lengths' record 2: length 5",
        ),
        (
            lambda r: r["valid"].update(vision_lengths=[1, 2.5, 0]),
            r"'valid' key 'vision_lengths' record 1: length 2.5",
        ),
        (
            lambda r: r["test"].update(vision_lengths=[1, 2]),
            r"'test' key 'vision_lengths': expected 3 numbers",
        ),
        (
            lambda r: r["train"].pop("regression_labels"),
            r"'train': key 'regression_labels' is missing",
        ),
    ],
)
def test_mmsa_bad_content(tmp_path, edit, message):
    raw = _mmsa()
    edit(raw)
    with pytest.raises(DataError, match=r"unaligned_50\.pkl split " + message):
        mosei.load_mmsa_pickle(_dump(tmp_path, raw, "unaligned_50.pkl"))


def test_mmsa_bad_bert_mask(tmp_path):
    raw = _mmsa()
    raw["test"]["text_bert"][1, 1, 0] = 0.5
    with pytest.raises(
        DataError, match=r"split 'test' key 'text_bert' record 1: row 1 \(the attention mask\)"
    ):
        mosei.load_mmsa_pickle(_dump(tmp_path, raw), text="text_bert")


def test_dataset_items_are_keyed_by_modality(tmp_path):
    torch = pytest.importorskip("torch")
    split = mosei.load_mult_pickle(_dump(tmp_path, _mult()))["test"]
    ds = mosei.MoseiDataset(split)
    features, label = ds[1]
    assert len(ds) == 3 and features.keys() == {"audio", "visual", "text"}
    assert torch.equal(features["visual"], torch.from_numpy(split.features["visual"][1]))
    assert label.item() == pytest.approx(float(split.labels[1]))


def test_pickle_written_by_numpy_1_reads(tmp_path):
    # numpy < 2 names its reconstructor numpy.core.multiarray; protocol 2 spells the
    # module as text, so the numpy-1 file is this one's bytes with the name changed
    raw = _mult(2)
    data = pickle.dumps(raw, protocol=2)
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "old.pkl"
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2's alias of numpy.core
        splits = mosei.load_mult_pickle(path)
    np.testing.assert_array_equal(splits["test"].features["text"], raw["test"]["text"])


def test_unaligned_mult_pickle_has_a_length_per_modality(tmp_path):
    # mosei_senti_data_noalign.pkl: 500 audio and vision steps, 50 words
    raw = _mult(2)
    for split in raw.values():
        split["audio"] = np.ones((2, 7, 74), np.float32)
        split["vision"] = np.ones((2, 9, 35), np.float32)
    splits = mosei.load_mult_pickle(_dump(tmp_path, raw, "mosei_senti_data_noalign.pkl"))
    assert {m: a.shape[1] for m, a in splits["valid"].features.items()} == {
        "audio": 7,
        "visual": 9,
        "text": T,
    }


def test_skip_bad_drops_the_bad_records_from_every_array_and_warns_once(tmp_path):
    raw = _mult(4)
    raw["train"]["labels"][1, 0, 0] = np.nan
    raw["valid"]["id"] = np.array([b"a", b"b", b"\xff", b"d"], dtype=object)
    path = _dump(tmp_path, raw, "mosei_senti_data.pkl")
    with pytest.warns(DataWarning) as caught:
        splits = mosei.load_mult_pickle(path, skip_bad=True)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 2 bad record(s)" in message
    assert "split 'train' key 'labels' record 1" in message and "key 'id' record 2" in message
    train, valid = splits["train"], splits["valid"]
    assert train.ids == ["vid0/0.5/1.5", "vid2/2.5/3.5", "vid3/3.5/4.5"]
    np.testing.assert_array_equal(train.labels, raw["train"]["labels"].reshape(4)[[0, 2, 3]])
    np.testing.assert_array_equal(train.features["text"], raw["train"]["text"][[0, 2, 3]])
    assert valid.ids == ["a", "b", "d"] and len(valid.features["audio"]) == 3
    assert len(splits["test"]) == 4


def test_skip_bad_mmsa_keeps_lengths_aligned(tmp_path):
    raw = _mmsa()
    raw["test"]["audio_lengths"] = [T, -1, 1]
    with pytest.warns(DataWarning, match=r"skipped 1 bad record.*'audio_lengths' record 1"):
        test = mosei.load_mmsa_pickle(_dump(tmp_path, raw), skip_bad=True)["test"]
    np.testing.assert_array_equal(test.lengths["audio"], [T, 1])
    np.testing.assert_array_equal(test.lengths["visual"], [3, 0])
    assert test.ids == ["clip0$_$0", "clip2$_$2"]


def test_without_skip_bad_the_lowest_bad_record_is_named(tmp_path):
    raw = _mult(4)
    raw["test"]["labels"][3, 0, 0] = 9.0
    raw["test"]["id"] = np.array([b"a", b"\xff", b"c", b"d"], dtype=object)
    with pytest.raises(DataError, match=r"split 'test' key 'id' record 1"):
        mosei.load_mult_pickle(_dump(tmp_path, raw))
