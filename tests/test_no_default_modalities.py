"""No implicit (image, text) modality set: a dataset declares its modalities, a report's
come from its eval.json files (an old one upgraded where it is read)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from balgrad.data._base import DatasetInfo
from balgrad.data._conditioned_view import modalities_of
from balgrad.errors import DataError
from balgrad.report import protocol_layout


def test_a_dataset_declares_its_modalities():
    with pytest.raises(TypeError, match="modalities"):
        DatasetInfo("mine", "single_label", ["a", "b"])  # type: ignore[call-arg]
    info = DatasetInfo("mine", "single_label", ["a", "b"], modalities={"x": "audio", "y": "text"})
    assert modalities_of(SimpleNamespace(info=info)) == {"x": "audio", "y": "text"}
    for undeclared in (SimpleNamespace(), SimpleNamespace(info=SimpleNamespace(name="old"))):
        with pytest.raises(DataError, match="declares no modalities"):
            modalities_of(undeclared)


def test_a_report_layout_reads_the_modalities_of_the_record_or_the_upgraded_old_one():
    three = {"protocol": {"modalities": {"a": "audio", "v": "video", "t": "text"}}}
    assert protocol_layout(three).names == ["a", "v", "t"]
    old = {"protocol": {"image_noise": 0.3, "text_noise": 0.2}}  # balgrad 0.1's eval.json
    layout = protocol_layout(old)
    assert layout.modalities == {"image": "image", "text": "text"}
    assert layout.noise == {"image": 0.3, "text": 0.2} and layout.legacy
    assert protocol_layout({}).names == ["image", "text"]  # 0.1 with no protocol at all
