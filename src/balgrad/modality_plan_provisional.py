"""PROVISIONAL (replaced by config.modality_plan when the config work merges)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModalityPlan:
    name: str
    kind: str
    backbone: str
    backbone_options: dict = field(default_factory=dict)
    noise: float = 0.0


def modality_plan(cfg) -> dict[str, ModalityPlan]:
    from balgrad.data.catalog import DATASETS
    from balgrad.data.kinds import KINDS

    meta = DATASETS.metadata(cfg.dataset)
    out = {}
    for m, kind in meta["modalities"].items():
        if m == "image" and kind == "image":
            backbone, noise = cfg.image_backbone, cfg.image_noise
        elif m == "text" and kind == "text":
            backbone, noise = cfg.text_backbone, cfg.text_noise
        else:
            backbone, noise = meta["modality_backbones"][m], KINDS[kind].default_noise
        out[m] = ModalityPlan(m, kind, backbone, dict(cfg.backbone_options.get(m, {})), noise)
    return out
