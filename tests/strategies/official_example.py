"""The official OGM-GE ``AVClassifier`` shape (examples/declared_official_model.py), loaded
once for the tests that transcribe an official training step on it."""

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "declared_official_model.py"
_spec = importlib.util.spec_from_file_location("declared_official_model", EXAMPLE)
official = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official)
