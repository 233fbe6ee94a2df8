"""The generic dataset in the modalities its index declares (image, WAV audio, .npy
features, text): a user's own data in real file formats, no package written."""

from __future__ import annotations

import json
import warnings
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from balgrad.cli import main
from balgrad.config import RunConfig, dataset_modalities
from balgrad.data.readers._generic import GenericDataset
from balgrad.data.readers._generic_modal import GenericModalDataset
from balgrad.data.readers._registry_disk import DataWarning, load_dataset_from_disk
from balgrad.errors import ConfigError, DataError

RATE = 8000
HEADER = "photo:image,sound:audio,emb:features,label"


def write_wav(path, samples, rate=RATE, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def make_data(root, header=HEADER, n=(8, 4), suffix="csv"):
    """train/test index files, PNGs, 16-bit WAVs and float32 .npy vectors; the class
    shows in every modality (class 1: brighter, higher pitch, shifted features)."""
    rng = np.random.default_rng(0)
    for sub in ("img", "wav", "emb"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    columns = header.split(",")
    for split, count in zip(("train", "test"), n):
        rows = []
        for i in range(count):
            c, name = i % 2, f"{split}{i}"
            pixels = rng.integers(0, 128, (6, 6, 3)) + 127 * c
            Image.fromarray(pixels.astype("uint8")).save(root / "img" / f"{name}.png")
            write_wav(root / "wav" / f"{name}.wav", np.sin(np.arange(400) * (0.1 + 0.3 * c)) * 9000)
            np.save(root / "emb" / f"{name}.npy", (rng.normal(size=3) + 2 * c).astype("float32"))
            values = [f"img/{name}.png", f"wav/{name}.wav", f"emb/{name}.npy", ["cat", "dog"][c]]
            rows.append(dict(zip(columns, values)))
        path = root / f"{split}.{suffix}"
        if suffix == "csv":
            lines = [header] + [",".join(r.values()) for r in rows]
        else:
            lines = [json.dumps(r) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def data(tmp_path):
    return make_data(tmp_path / "mine")


def load(root, split="train", **options):
    return load_dataset_from_disk("generic", str(root), split, **options)


def test_the_header_declares_the_modalities_and_each_kind_is_decoded(data):
    ds = load(data)
    assert isinstance(ds, GenericModalDataset)
    assert ds.info.modalities == {"photo": "image", "sound": "audio", "emb": "features"}
    assert ds.info.classes == ["cat", "dog"] and len(ds) == 8
    assert ds.validate() == []
    ex = ds[1]
    pixels = np.asarray(Image.open(data / "img" / "train1.png").convert("RGB"), dtype=np.float32)
    torch.testing.assert_close(ex.inputs["photo"], torch.from_numpy(pixels).permute(2, 0, 1) / 255)
    # 400 samples at 8 kHz looped to the default 3 s, on the [-1, 1] scale of int16
    with wave.open(str(data / "wav" / "train1.wav")) as w:
        ints = np.frombuffer(w.readframes(400), dtype="<i2")
    assert ex.inputs["sound"].shape == (3 * RATE,) and ds.sample_rate == RATE
    torch.testing.assert_close(
        ex.inputs["sound"][400:800], torch.from_numpy(ints / 32768.0).float()
    )
    emb = np.load(data / "emb" / "train1.npy")
    torch.testing.assert_close(ex.inputs["emb"], torch.from_numpy(emb)[None])  # [F] -> [1, F]
    assert int(ex.label) == 1


def test_the_modalities_option_declares_plainly_named_columns_and_jsonl_works(tmp_path):
    root = make_data(tmp_path / "j", header="photo,sound,emb,label", suffix="jsonl")
    kinds = {"photo": "image", "sound": "audio", "emb": "features"}
    ds = load(root, modalities=kinds, audio_seconds=0.1)
    assert ds.info.modalities == kinds and ds[0].inputs["sound"].shape == (800,)
    with pytest.raises(
        DataError, match=r"test.jsonl line 1: the header lacks the column of the modality 'text'"
    ):
        load(root, "test", modalities={**kinds, "text": "text"})


def test_a_text_column_is_the_text_and_feeds_texts(tmp_path):
    root = make_data(tmp_path / "t", header="photo:image,caption:text,emb:features,label")
    ds = load(root)
    assert ds.info.modalities["caption"] == "text"
    assert ds[0].inputs["caption"] == "wav/train0.wav"  # the cell itself, not a file read
    assert ds.texts == [ds[i].inputs["caption"] for i in range(len(ds))]


def test_the_image_text_index_still_loads_as_before():
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "generic"
    ds = load(fixture)
    assert type(ds) is GenericDataset and ds.info.modalities == {"image": "image", "text": "text"}
    assert dataset_modalities("generic", str(fixture)) == {"image": "image", "text": "text"}


def test_an_image_text_index_with_a_colon_in_another_column_is_read_as_before(tmp_path):
    root = tmp_path / "old"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "img" / "a.png")
    rows = ["image,text,label,taken:at", "img/a.png,a cat,cat,noon", "img/a.png,a dog,dog,dawn"]
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    ds = load(root)
    assert type(ds) is GenericDataset and ds.texts == ["a cat", "a dog"]


def test_the_run_config_resolves_the_declared_modalities_with_kind_defaults(data):
    cfg = RunConfig(dataset="generic", data_dir=str(data), methods=["joint"])
    assert {m: (s.kind, s.backbone) for m, s in cfg.specs.items()} == {
        "photo": ("image", "efficientnet-lite0"),
        "sound": ("audio", "resnet18"),
        "emb": ("features", "gru"),
    }
    with pytest.raises(ValueError, match=r"'emb' of dataset 'generic' is of kind features"):
        RunConfig(dataset="generic", data_dir=str(data), modalities={"emb": {"noise": "3dB"}})


def _rewrite_row(root, line, column, value):
    path = root / "train.csv"
    rows = [r.split(",") for r in path.read_text().splitlines()]
    rows[line - 1][rows[0].index(column)] = value
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda r: _rewrite_row(r, 3, "sound:audio", "wav/nope.wav"),
         r"train.csv line 3: WAV file \(column 'sound:audio'\) .*nope.wav is missing"),
        (lambda r: (r / "train.csv").write_text((r / "train.csv").read_text().replace("emb:features", "emb:embedding")),
         r"train.csv line 1: column 'emb:embedding' declares the kind 'embedding'; the generic "
         r"reader reads image, text, audio, features"),
        (lambda r: (r / "wav" / "train2.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk"),
         r"train.csv line 4, column 'sound': audio file .*train2.wav cannot be read as WAV"),
        (lambda r: (r / "emb" / "train5.npy").write_bytes(b"not an array"),
         r"train.csv line 7, column 'emb': feature array .*train5.npy cannot be read as a .npy"),
        (lambda r: np.save(r / "emb" / "train4.npy", np.zeros((2, 5), "float32")),
         r"train.csv line 6, column 'emb': feature array .*train4.npy has the shape \[2, 5\] "
         r"\(as \[L, F\]\); the first of 'emb' \(.*train.csv line 2, column 'emb'\) has \[1, 3\]"),
        (lambda r: write_wav(r / "wav" / "train3.wav", np.zeros(10), rate=16000),
         r"train.csv line 5, column 'sound': audio file .*train3.wav is at 16000 Hz.*sample_rate"),
        (lambda r: (r / "img" / "train1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"),
         r"train.csv line 3, column 'photo': image file .*train1.png cannot be read"),
    ],
    ids=["missing-file", "unknown-kind", "corrupt-wav", "corrupt-npy", "shape", "rate", "png"],
)  # fmt: skip
def test_bad_input_is_an_error_naming_file_line_and_column(data, breakage, message):
    breakage(data)
    with pytest.raises((DataError, ConfigError), match=message):
        load(data).validate()


def test_a_test_array_of_another_shape_than_trains_is_named(data):
    np.save(data / "emb" / "test0.npy", np.zeros(5, "float32"))
    with pytest.raises(
        DataError, match=r"test.csv line 2, column 'emb'.*\[1, 5\].*train.csv line 2"
    ):
        load(data, "test").validate()


def test_skip_bad_drops_a_corrupt_row_with_one_warning(data):
    (data / "wav" / "train2.wav").write_bytes(b"RIFF")
    ds = load(data, skip_bad=True)
    with pytest.warns(DataWarning, match=r"skipped 1 bad record.*train2.wav"):
        reasons = ds.validate()
    assert len(reasons) == 1 and len(ds) == 7 and len(ds.labels) == 7


def test_another_rate_is_resampled_when_sample_rate_is_given(data):
    write_wav(data / "wav" / "train3.wav", np.zeros(100), rate=16000)
    ds = load(data, sample_rate=RATE, audio_seconds=0.5)
    assert ds.validate() == [] and ds[3].inputs["sound"].shape == (RATE // 2,)


def test_compare_trains_a_three_modality_dataset_from_its_index(data, tmp_path):
    argv = [
        "compare", "--dataset", "generic", "--data-dir", str(data),
        "--methods", "joint", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.25",
        "--backbone", "photo=cnn", "--backbone-option", "photo.width=2",
        "--backbone-option", "photo.image_size=8", "--backbone-option", "sound.width=1",
        "--backbone-option", "emb.hidden=4", "--dataset-option", "audio_seconds=0.05",
        "--embed-dim", "4", "--no-sweep", "--no-progress",
        "--out", str(tmp_path), "--name", "run", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny set: the protocol's small-sample warnings
        assert main(argv) == 0
    ev = json.loads((tmp_path / "run" / "joint" / "seed0" / "eval.json").read_text())
    assert ev["protocol"]["modalities"] == {"photo": "image", "sound": "audio", "emb": "features"}
    for m in ("photo", "sound", "emb"):
        assert {f"missing_{m}", f"noisy_{m}", f"only_{m}"} <= set(ev["conditions"])
    assert 0.0 <= ev["conditions"]["full"]["accuracy"] <= 100.0


# --------------------------------------- a text-kind modality not named text: text behaviour


@pytest.fixture
def captioned(tmp_path):
    """photo:image + caption:text, the caption's words telling the class."""
    root = tmp_path / "cap"
    (root / "img").mkdir(parents=True)
    lines = ["photo:image,caption:text,label"]
    for i in range(6):
        Image.new("RGB", (4, 4), (40 * i, 0, 0)).save(root / "img" / f"{i}.png")
        words = "a small grey cat sleeps" if i % 2 else "a big brown dog runs fast"
        lines.append(f"img/{i}.png,{words} {i},{'cat' if i % 2 else 'dog'}")
    for split in ("train", "test"):
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_a_text_kind_modality_named_caption_gets_texts_tokenizer_file_and_token_noise(captioned):
    from balgrad.backbones import create_backbone
    from balgrad.data._batch import collate
    from balgrad.data._conditioned_view import ConditionedView
    from balgrad.data._impairments import Condition
    from balgrad.experiment import tokenizer_file, training_texts

    ds = load(captioned)
    assert ds.info.modalities == {"photo": "image", "caption": "text"}
    for png in (captioned / "img").iterdir():
        png.unlink()  # the captions alone are read: no image is decoded below
    # the vocabulary is fitted on the captions, read from the index
    rows = (captioned / "train.csv").read_text().splitlines()[1:]
    assert training_texts(ds, "caption") == [r.split(",")[1] for r in rows]
    kinds = dict(ds.info.modalities)
    assert tokenizer_file("caption", kinds) == "tokenizer.json"  # as a modality named text
    assert tokenizer_file("caption", {**kinds, "title": "text"}) == "tokenizer-caption.json"

    encoder = create_backbone("text", "small", texts=training_texts(ds, "caption"))

    def ids(condition):
        view = ConditionedView(
            ds, condition, encoders={"caption": encoder}, embedding_mode=False, load=["caption"]
        )
        return collate([view[i] for i in range(len(ds))], {"caption": encoder})

    clean = ids(Condition("full")).inputs["caption"]
    noisy = ids(Condition("noisy_caption", level=1.0)).inputs["caption"]
    real = clean["attention_mask"].bool() & ~torch.isin(
        clean["input_ids"], torch.tensor(list(encoder.special_ids))
    )
    # p = 1: every real token redrawn from the vocabulary (a draw may repeat it), the
    # padding and special tokens kept
    changed = (noisy["input_ids"][real] != clean["input_ids"][real]).float().mean()
    assert changed > 0.6, changed
    assert torch.equal(noisy["input_ids"][~real], clean["input_ids"][~real])
    blank = ids(Condition("missing_caption")).inputs["caption"]
    assert torch.equal(blank["input_ids"], encoder.tokenize([""] * len(ds))["input_ids"])


@pytest.mark.parametrize(
    ("breakage", "words"),
    [
        (lambda r: (r / "train.csv").write_text("photo:image,sound:wav,label\n"),
         ["train.csv line 1", "'sound:wav'", "kind 'wav'"]),
        (lambda r: (r / "emb" / "test1.npy").write_bytes(b"\x93NUMPY broken"),
         ["test.csv line 3, column 'emb'", "test1.npy", "cannot be read as a .npy array"]),
    ],
    ids=["unknown-kind", "corrupt-test-array"],
)  # fmt: skip
def test_compare_names_bad_data_in_one_error_line(data, tmp_path, capsys, breakage, words):
    breakage(data)
    argv = ["compare", "--dataset", "generic", "--data-dir", str(data), "--methods", "joint",
            "--backbone", "photo=cnn", "--out", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    code = main(argv)  # the data's errors: main returns 2 (argparse's own would exit)
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("balgrad: error:") and "Traceback" not in out + err
    for word in words:
        assert word in err, (word, err)
