"""The field's audio-visual and three-modality benchmarks as registered on-disk datasets.

* ``cremad``: CREMA-D in the layout of the OGM-GE official code (audio + visual, 6
  emotions; :class:`~balgrad.data.readers._cremad.CremaDDataset`).
* ``mosei``, ``mosi``: CMU-MOSEI / CMU-MOSI from the MulT or the MMSA pickle (text, audio
  and visual feature sequences; :class:`~balgrad.data.readers._mosei.MoseiSentiment`).

Each declares its modalities (name -> kind) and the backbone each modality gets unless a
run says otherwise. ``balgrad.data._catalog`` imports this module with its built-ins.
"""

from __future__ import annotations

from balgrad.data._catalog import register_dataset
from balgrad.data.readers._cremad import CremaDDataset
from balgrad.data.readers._mosei import MODALITIES, MoseiSentiment, MosiSentiment

register_dataset(
    "cremad",
    CremaDDataset,
    aliases=("crema_d", "crema"),
    kind="disk",
    description="CREMA-D emotion clips, audio + visual, 6 classes (OGM-GE layout)",
    modalities={"audio": "audio", "visual": "video"},
    modality_backbones={"audio": "resnet18", "visual": "resnet18"},
)
for _name, _cls, _what in (
    ("mosei", MoseiSentiment, "CMU-MOSEI"),
    ("mosi", MosiSentiment, "CMU-MOSI"),
):
    register_dataset(
        _name,
        _cls,
        aliases=(f"cmu_{_name}",),
        kind="disk",
        description=(
            f"{_what} sentiment, text + audio + visual feature sequences "
            "(MulT or MMSA pickle; acc7 or acc2 classes)"
        ),
        modalities={m: "features" for m in MODALITIES},
        modality_backbones={m: "gru" for m in MODALITIES},
    )
