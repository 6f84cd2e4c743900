"""Stage text for the QGIS side: the engine announces survey / coding / rate-control passes to a log object that
takes them (plain log functions, the CLI's, see none), and StageProgress turns them into Processing's progress text."""

from __future__ import annotations

import pytest
from qgis.core import QgsProcessingFeedback

from sar_compressor.algorithms.progress import StageProgress, time_left_text


class StageLog:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stages: list[str] = []

    def __call__(self, message: str) -> None:
        self.lines.append(message)

    def announce_stage(self, text: str) -> None:
        self.stages.append(text)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from sar_compressor.engine.simulate import write_scene

    path = tmp_path_factory.mktemp("progress") / "scene.tif"
    write_scene(path, 192, 192, looks=1, seed=3, kind="intensity", dtype="float32", georef=True)
    return path


def test_engine_announces_stages_only_to_a_log_that_takes_them(scene, tmp_path):
    from sar_compressor.engine.api import compress_file

    log = StageLog()
    compress_file(scene, tmp_path / "a.sarz", log=log)
    assert log.stages == ["survey (range and statistics)", "coding"]
    assert not any(line.startswith("stage") for line in log.lines)

    plain: list[str] = []
    compress_file(scene, tmp_path / "b.sarz", log=plain.append)
    assert plain and not any(line.startswith(("survey", "coding", "stage")) for line in plain)

    log = StageLog()
    compress_file(scene, tmp_path / "c.sarz", target_bpp=1.0, log=log)
    assert log.stages[:2] == ["survey (range and statistics)", "rate-control pass 1 of at most 16"]
    assert log.stages[-1] == "coding at the chosen step" and len(log.stages) >= 4  # the passes share one survey


def test_stage_progress_text_counter_and_time_left(monkeypatch):
    from sar_compressor.algorithms import progress

    texts, values = [], []
    feedback = QgsProcessingFeedback()
    monkeypatch.setattr(feedback, "setProgressText", texts.append)
    monkeypatch.setattr(feedback, "setProgress", values.append)
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    stages = StageProgress(feedback, "starting", unit="tile", share=0.9)
    stages.announce_stage("coding")
    now[0] = 110.0
    stages.progress(1, 4)  # 10 s for a quarter of 90 %
    assert values[-1] == pytest.approx(22.5)
    assert texts[-1] == "coding, tile 2 of 4, about 30 s left"  # the coding's own: 34 s counted the metrics' share
    now[0] = 130.0
    measuring = stages.follow_stage("metrics")
    assert values[-1] == pytest.approx(90.0) and texts[-1] == "metrics"  # no stale estimate of the time left
    now[0] = 140.0
    measuring(500, 1000)  # 10 s for half the metrics: the rest of the bar filled by half, its own time left
    assert values[-1] == pytest.approx(95.0) and texts[-1] == "metrics, about 10 s left"


def test_time_left_text():
    assert time_left_text(1.0, 0.5) == ""  # too early to say
    assert time_left_text(10.0, 0.01) == ""
    assert time_left_text(10.0, 0.5) == "about 10 s left"
    assert time_left_text(60.0, 0.25) == "about 3 min 00 s left"
