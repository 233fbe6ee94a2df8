"""An eval.json lacking a condition of the protocol is warned about, naming the run and
the condition (issue 23, item 7): its row shows "–" in the tables."""

import json
import logging

from report_runfolders import write_run

from balgrad.report._build import build_report, expected_roles
from balgrad.report._layout import Layout


def test_a_condition_missing_from_an_eval_json_is_warned_about(tmp_path, caplog):
    run = write_run(tmp_path / "run", ["joint", "balgrad"], [0])
    path = run / "balgrad" / "seed0" / "eval.json"
    ev = json.loads(path.read_text())
    del ev["conditions"]["noisy_text"]
    path.write_text(json.dumps(ev))
    with caplog.at_level(logging.WARNING, logger="balgrad.report"):
        build_report(run, draw=False)
    lines = [r.getMessage() for r in caplog.records if "has no condition" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "balgrad seed 0" in lines[0] and "noisy_text" in lines[0] and "–" in lines[0]
    assert "| Noisy text | 40.00 | – |" in (run / "table.md").read_text()


def test_a_whole_eval_json_gives_no_such_warning(tmp_path, caplog):
    run = write_run(tmp_path / "run", ["joint", "balgrad"], [0])
    with caplog.at_level(logging.WARNING, logger="balgrad.report"):
        build_report(run, draw=False)
    assert "has no condition" not in caplog.text


def test_the_expected_conditions_follow_the_protocol():
    from balgrad.evaluate._protocol import ProtocolConfig

    for modalities in (
        {"image": "image", "text": "text"},
        {"image": "image", "audio": "audio", "text": "text"},
    ):
        protocol = ProtocolConfig(modalities=modalities)
        assert expected_roles(Layout(modalities)) == list(protocol.table_conditions())
