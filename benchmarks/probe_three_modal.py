"""Probe the ``keypad`` three-modality job against the criteria of
docs/three-modality-benchmark.md, before ``balgrad compare`` speaks M modalities.

Each modality's frozen features are encoded once per dataset setting (EfficientNet-Lite0
at 112 px for the image, MiniLM for the caption, ``efficientnet-lite0-mel`` with the
keypad registration's options for the sound) and cached in ``--cache`` (default /tmp/keypad_probe). Then balgrad's own M-modal
model and strategies train on them in a plain loop, as the default job trains: identity
towers over the cached features, embed_dim 128, concat fusion, linear head, Adam 1e-3,
batch 64, 8 epochs, the epoch with the best validation accuracy (full inputs; 10% of
train, stratified, ``data_seed`` 0) kept. Seeds vary the initialisation and batch order
only; data and impairments stay fixed.

Per candidate and seed it measures:

- criterion 1: each modality *trained alone*: the same model with the two other towers
  replaced by a constant zero feature in training, selection and test (joint loss);
- criterion 2: joint training's ``only_<m>`` scores (every other modality missing on
  every sample), missing = ``input`` (the frozen encoder's feature of the blank input:
  a black image, silence, the empty string; ``balgrad compare``'s default) and, for the
  record, missing = ``embedding`` (h zeroed);
- criterion 3: per tower, the blank input's feature against the training features
  (cosine to the mean, norm ratio, distance percentile) and noisy-vs-clean cosines
  (image σ = 0.5, audio 0 dB white noise; the kinds' default levels);
- criterion 4 (``--criteria 4``): the std over seeds of joint's and BalGrad's missing
  Avg and ΔGap (``missing_<m>``: m missing, the others present; mean and max − min over
  the three modalities). Only the spread of BalGrad's scores is printed.

    python benchmarks/probe_three_modal.py --set snr_db=-10 --seeds 0 1
    python benchmarks/probe_three_modal.py --set snr_db=-10 --seeds 0 1 2 3 4 --criteria 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from balgrad.data import train_val_split
from balgrad.data._kinds import noise_salt, noisy_audio, noisy_image
from balgrad.data.readers import (
    KEYPAD_BACKBONE_DEFAULTS,
    KEYPAD_MODALITIES,
    KeypadConfig,
    KeypadDataset,
)
from balgrad.models import MultimodalModel
from balgrad.strategies import create_strategy

MODALITIES = tuple(KEYPAD_MODALITIES)  # image, audio, text
EPOCHS, BATCH, LR, EMBED = 8, 64, 1e-3, 128
AUDIO_TOWER = KEYPAD_BACKBONE_DEFAULTS["efficientnet-lite0-mel"]
IMAGE_TOWER = KEYPAD_BACKBONE_DEFAULTS["efficientnet-lite0"]
IMAGE_NOISE, AUDIO_SNR = 0.5, 0.0  # the kinds' default noise levels


class Features(nn.Module):
    """A tower over cached features: the identity (``out_dim`` for the model)."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.out_dim = out_dim

    def forward(self, x):
        return x


# -- encoding -------------------------------------------------------------------------------
def _encoders():
    from balgrad.backbones import (
        EfficientNetLite0Encoder,
        MiniLMTextEncoder,
        SpectrogramImageEncoder,
    )

    return {
        "image": EfficientNetLite0Encoder(**IMAGE_TOWER),
        "audio": SpectrogramImageEncoder(**AUDIO_TOWER),
        "text": MiniLMTextEncoder(),
    }


@torch.no_grad()
def _encode(enc, modality: str, items: list) -> torch.Tensor:
    out = []
    for start in range(0, len(items), 128):
        chunk = items[start : start + 128]
        if modality == "text":
            out.append(enc(enc.tokenize(chunk)))
        else:
            out.append(enc(torch.stack([enc.preprocess(x) for x in chunk])))
    return torch.cat(out).float()


def _raw(ds, modality: str, indices, condition: str, eval_seed: int = 0) -> list:
    items = []
    for i in indices:
        if modality == "text":
            items.append(ds.texts[i])
            continue
        if modality == "image":
            x = torch.from_numpy(ds.images[i].astype(np.float32) / 255.0).unsqueeze(0)
            if condition == "noisy":
                x = noisy_image(x, IMAGE_NOISE, eval_seed, i, noise_salt("image"))
        else:
            x = ds.waveform(i)
            if condition == "noisy":
                x = noisy_audio(x, AUDIO_SNR, eval_seed, i, noise_salt("audio"))
        items.append(x)
    return items


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def features(cfg: KeypadConfig, cache: Path, timings: dict) -> dict:
    """{split: {modality: [N, F]}}, split in train/val/test/noisy, plus {"blank": {m: [F]}}
    and the labels; each modality's file keyed by what determines it."""
    train_full = KeypadDataset("train", config=cfg)
    test = KeypadDataset("test", config=cfg)
    train, val = train_val_split(train_full, 0.1, 0)
    split_idx = {"train": train.indices, "val": val.indices}
    encs = None
    out: dict = {s: {} for s in ("train", "val", "test", "noisy", "blank")}
    digits_key = cfg.digits_config().content_key(0)
    for m in MODALITIES:
        data_key = cfg.content_key(0) if m == "audio" else digits_key
        tower = {"audio": AUDIO_TOWER, "image": IMAGE_TOWER}.get(m)
        path = cache / f"{m}-{_key(m, data_key, 'effnet112/minilm', tower)}.pt"
        if path.is_file():
            got = torch.load(path, weights_only=True)
        else:
            encs = encs or _encoders()
            t0 = time.perf_counter()
            got = {}
            for s in ("train", "val"):
                got[s] = _encode(encs[m], m, _raw(train_full, m, split_idx[s], "clean"))
            got["test"] = _encode(encs[m], m, _raw(test, m, range(len(test)), "clean"))
            if m != "text":  # text noise is token replacement at collation: not probed
                got["noisy"] = _encode(encs[m], m, _raw(test, m, range(len(test)), "noisy"))
            blank = {
                "image": torch.zeros(1, 28, 28),
                "audio": torch.zeros(cfg.num_samples),
                "text": "",
            }
            got["blank"] = _encode(encs[m], m, [blank[m]])[0]
            timings[m] = time.perf_counter() - t0
            cache.mkdir(parents=True, exist_ok=True)
            torch.save(got, path)
        for s, v in got.items():
            out[s][m] = v
    labels = torch.as_tensor(train_full.labels)
    out["labels"] = {
        "train": labels[train.indices],
        "val": labels[val.indices],
        "test": torch.as_tensor(test.labels),
    }
    return out


# -- training -------------------------------------------------------------------------------
def _accuracy(model, feats: dict, labels, drop=None) -> float:
    model.eval()
    with torch.no_grad():
        out = model(feats, drop)
    return 100.0 * float((out.logits.argmax(-1) == labels).float().mean())


def train(method: str, data: dict, seed: int, alone: str | None = None) -> MultimodalModel:
    """Train on the cached features (with ``alone``: the other towers' features zero)."""

    def view(split):
        return {
            m: (v if alone in (None, m) else torch.zeros_like(v))
            for m, v in data[split].items()
            if m in MODALITIES
        }

    torch.manual_seed(seed)
    dims = {m: data["train"][m].shape[1] for m in MODALITIES}
    model = MultimodalModel({m: Features(d) for m, d in dims.items()}, 10, embed_dim=EMBED)
    strategy = create_strategy(method)
    optimizer = torch.optim.Adam(strategy.param_groups(model, LR), lr=LR)
    tr, va = view("train"), view("val")
    y, yv = data["labels"]["train"], data["labels"]["val"]
    g = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None
    for epoch in range(EPOCHS):
        strategy.on_epoch_start(epoch, EPOCHS)
        model.train()
        order = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), BATCH):
            idx = order[start : start + BATCH]
            optimizer.zero_grad()
            out = model({m: v[idx] for m, v in tr.items()})
            strategy.backward(model, out, y[idx])
            optimizer.step()
        score = _accuracy(model, va, yv)
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model


def conditions(model, data: dict) -> dict[str, float]:
    """full, missing_<m>, only_<m> (missing = input: the blank input's feature) and
    only_<m>@embedding (missing = embedding), test accuracy in %."""
    test, y = data["test"], data["labels"]["test"]
    n = len(y)

    def blanked(absent):
        return {m: data["blank"][m].expand(n, -1) if m in absent else v for m, v in test.items()}

    true = torch.ones(n, dtype=torch.bool)
    scores = {"full": _accuracy(model, test, y)}
    for m in MODALITIES:
        others = [k for k in MODALITIES if k != m]
        scores[f"missing_{m}"] = _accuracy(model, blanked([m]), y)
        scores[f"only_{m}"] = _accuracy(model, blanked(others), y)
        scores[f"only_{m}@embedding"] = _accuracy(model, test, y, {k: true for k in others})
    return scores


# -- criterion 3 ----------------------------------------------------------------------------
def feature_stats(data: dict) -> dict[str, dict[str, float]]:
    out = {}
    for m in MODALITIES:
        tr = data["train"][m].double()
        mean = tr.mean(0)
        blank = data["blank"][m].double()
        dist = (tr - mean).norm(dim=1)
        row = {
            "blank_cos_to_mean": float(torch.nn.functional.cosine_similarity(blank, mean, dim=0)),
            "blank_norm_ratio": float(blank.norm() / tr.norm(dim=1).mean()),
            "blank_distance_percentile": float(
                100.0 * (dist < (blank - mean).norm()).double().mean()
            ),
        }
        if m in data["noisy"]:
            row["noisy_clean_cos"] = float(
                torch.nn.functional.cosine_similarity(
                    data["noisy"][m].double(), data["test"][m].double(), dim=1
                ).mean()
            )
        out[m] = row
    return out


def _std(values) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", nargs="*", default=[], help="KeypadConfig options, key=value")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    p.add_argument("--criteria", nargs="*", type=int, default=[1, 2, 3])
    p.add_argument("--cache", default="/tmp/keypad_probe")
    p.add_argument("--json", help="write every number here")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    options = {}
    for item in args.set:
        k, _, v = item.partition("=")
        options[k] = json.loads(v) if v[:1] in "-0123456789.tfn[{" else v
    cfg = KeypadConfig(**options)
    t0 = time.perf_counter()
    timings: dict = {}
    data = features(cfg, Path(args.cache), timings)
    result: dict = {"options": options, "encode_seconds": timings, "seeds": args.seeds}
    print(f"options {options}: data + features {time.perf_counter() - t0:.1f} s {timings}")
    if 1 in args.criteria:
        alone = {
            m: [conditions(train("joint", data, s, alone=m), data)["full"] for s in args.seeds]
            for m in MODALITIES
        }
        result["alone"] = alone
        means = {m: statistics.mean(v) for m, v in alone.items()}
        ok = all(v >= 30.0 for v in means.values())
        print(
            "1 alone: "
            + " / ".join(f"{m} {v:.1f}" for m, v in means.items())
            + (" PASS" if ok else " FAIL")
        )
    if 2 in args.criteria or 4 in args.criteria:
        t1 = time.perf_counter()
        joint = [conditions(train("joint", data, s), data) for s in args.seeds]
        result["joint_seconds_per_run"] = (time.perf_counter() - t1) / len(args.seeds)
        result["joint"] = joint
        mean = {k: statistics.mean(r[k] for r in joint) for k in joint[0]}
        for how, suffix in (("input", ""), ("embedding", "@embedding")):
            only = [mean[f"only_{m}{suffix}"] for m in MODALITIES]
            spread, weakest = max(only) - min(only), min(only)
            ok = 15.0 <= spread <= 60.0 and weakest >= 20.0
            print(
                f"2 joint only_<m> (missing={how}): "
                + " / ".join(f"{m} {v:.1f}" for m, v in zip(MODALITIES, only))
                + f"  spread {spread:.1f}, weakest {weakest:.1f}"
                + (" PASS" if ok else " FAIL")
                + f"  [full {mean['full']:.1f}; missing "
                + " / ".join(f"{m} {mean[f'missing_{m}']:.1f}" for m in MODALITIES)
                + "]"
            )
    if 3 in args.criteria:
        result["features"] = feature_stats(data)
        for m, row in result["features"].items():
            print(f"3 {m}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
    if 4 in args.criteria:
        t1 = time.perf_counter()
        bal = [conditions(train("balgrad", data, s), data) for s in args.seeds]
        result["balgrad_seconds_per_run"] = (time.perf_counter() - t1) / len(args.seeds)
        stds = {}
        for name, runs in (("joint", joint), ("balgrad", bal)):
            miss = [[r[f"missing_{m}"] for m in MODALITIES] for r in runs]
            stds[f"{name}_avg"] = _std([statistics.mean(v) for v in miss])
            stds[f"{name}_gap"] = _std([max(v) - min(v) for v in miss])
        result["std"] = stds  # BalGrad: only the spread over seeds
        ok = all(v <= 2.5 for v in stds.values())
        print(
            "4 std over seeds: "
            + ", ".join(f"{k} {v:.2f}" for k, v in stds.items())
            + (" PASS" if ok else " FAIL")
        )
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
