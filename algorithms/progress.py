"""Progress with words: what the engine is doing (stage), how far, and about how long is left.

The engine reports progress(done, total), log lines, and stages (to a log object with `announce_stage`, see
engine.api._stage). StageProgress turns all three into a Processing feedback's bar (setProgress), progress text
with the time left (setProgressText: the Processing dialog and log, qgis_process, the dock and QGIS's task
manager) and log (pushInfo).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from qgis.core import QgsProcessingFeedback

MIN_FRACTION_FOR_ESTIMATE = 0.03  # below this, the time left is mostly guesswork: not shown
MIN_SECONDS_FOR_ESTIMATE = 2.0


def time_left_text(elapsed_s: float, fraction: float) -> str:
    """'about 1 min 20 s left' from a linear extrapolation, '' when too early to say."""
    if fraction < MIN_FRACTION_FOR_ESTIMATE or elapsed_s < MIN_SECONDS_FOR_ESTIMATE or fraction >= 1.0:
        return ""
    left = elapsed_s * (1.0 - fraction) / fraction
    if left < 60:
        return f"about {max(1, round(left))} s left"
    minutes, seconds = divmod(round(left), 60)
    return f"about {minutes} min {seconds:02d} s left"


class StageProgress:
    """progress(done, total) and log(message) callbacks for one engine call, reporting to `feedback`.

    `unit` names what `total` counts when the engine's count is meaningful (tiles); with rate control the engine
    reports thousandths of the whole bar, and the stage comes from its log lines alone.
    """

    def __init__(
        self, feedback: QgsProcessingFeedback, stage: str, unit: Optional[str] = "tile", share: float = 1.0
    ) -> None:
        """`share`: the part of the bar the engine call fills (what follows, the metrics, fills the rest)."""
        self.feedback = feedback
        self.share = share
        self.stage = stage
        self.unit = unit
        self.start = time.monotonic()
        self.fraction = 0.0
        self.counter = ""
        self._show()

    def progress(self, done: int, total: int) -> None:
        if total <= 0:
            return
        self.fraction = self.share * min(1.0, done / total)
        self.counter = f"{self.unit} {min(done + 1, total)} of {total}" if self.unit and done < total else ""
        self.feedback.setProgress(100.0 * self.fraction)
        self._show()

    def __call__(self, message: str) -> None:
        """The engine's log callback: each line into the Processing log."""
        self.feedback.pushInfo(message)

    def announce_stage(self, stage: str) -> None:
        """A stage the engine starts (engine.api._stage): the progress text, which Processing also logs."""
        self.stage, self.counter = stage, ""
        self._show()

    def follow_stage(self, stage: str) -> Callable[[int, int], None]:
        """A stage the plugin itself runs after the engine call (measuring the reconstruction): a progress(done,
        total) callback that fills the rest of the bar, with the stage's own time left (the coding's last estimate
        stayed on screen through it: 'about 1 s left' for 8 s of metrics on a 3000x3000 scene)."""
        base = max(self.fraction, self.share)
        self.stage, self.counter, self.fraction, self.start = stage, "", base, time.monotonic()

        def progress(done: int, total: int) -> None:
            part = min(1.0, done / total) if total > 0 else 0.0
            self.fraction = base + (1.0 - base) * part
            self.feedback.setProgress(100.0 * self.fraction)
            left = time_left_text(time.monotonic() - self.start, part)
            self.feedback.setProgressText(f"{stage}, {left}" if left else stage)

        progress(0, 1)
        return progress

    def done(self, text: str) -> None:
        """The last progress text: what was made (QGIS's 'Task complete' notice shows it)."""
        self.fraction = 1.0
        self.feedback.setProgress(100.0)
        self.feedback.setProgressText(text)

    def callbacks(self) -> tuple[Callable[[int, int], None], Callable[[str], None]]:
        """(progress, log) for an engine call; the log object also takes stage announcements."""
        return self.progress, self

    def _show(self) -> None:
        parts = [self.stage]
        if self.counter:
            parts.append(self.counter)
        own = self.fraction / self.share if self.share > 0 else self.fraction  # the engine call's part: its own time
        left = time_left_text(time.monotonic() - self.start, own)  # left (Evaluate's metrics, 60 % of the bar, said
        if left:  # 18 s left of a 10.7 s run, counting the quick picture at their pace)
            parts.append(left)
        self.feedback.setProgressText(", ".join(parts))
