"""Run a Processing algorithm as a QGIS background task, the way the Processing toolbox does.

One code path: the dock never calls the engine for compression, it runs `sar_compressor:compress` in a
QgsProcessingAlgRunnerTask, so the run shows in QGIS's task manager and behaves like the toolbox, batch and
qgis_process runs.
"""

from __future__ import annotations

import shutil

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal


class RecordingFeedback(QgsProcessingFeedback):
    """Feedback that also keeps the error messages, to show them in the panel when a run fails, and passes the
    algorithm's progress text (stage, time left) on as a signal (queued to the main thread)."""

    progressTextChanged = pyqtSignal(str)  # noqa: N815 (Qt naming)

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def setProgressText(self, text: str) -> None:  # noqa: N802 (Qt API)
        super().setProgressText(text)
        self.progressTextChanged.emit(text)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803 (Qt API)
        self.errors.append(error)
        super().reportError(error, fatalError)


class AlgorithmRun(QObject):
    """One run of a Processing algorithm in the task manager; holds every object the task needs alive.

    The context, feedback and algorithm must outlive the task (the task keeps C++ references to them), so they
    live on this object until the run has finished.
    """

    progressChanged = pyqtSignal(float)  # noqa: N815 (Qt naming)
    stageChanged = pyqtSignal(str)  # noqa: N815 (Qt naming): the algorithm's progress text (stage, time left)
    finished = pyqtSignal(bool, dict)  # successful, results

    _running: set[AlgorithmRun] = set()  # alive until the task reports back, even if the dock is deleted

    def __init__(self, algorithm_id: str, parameters: dict, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.algorithm_id = algorithm_id
        self.parameters = dict(parameters)
        self.feedback = RecordingFeedback()
        self.context = QgsProcessingContext()
        self.context.setProject(QgsProject.instance())
        self.algorithm = None
        self.task: QgsProcessingAlgRunnerTask | None = None
        self.cancel_requested = False
        self.successful: bool | None = None
        self.results: dict = {}
        self.stage = ""
        self.leftovers: list[str] = []  # folders the run writes into, removed once it has ended (a cancelled unload)
        self.feedback.progressTextChanged.connect(self._on_progress_text)

    @property
    def running(self) -> bool:
        """True from start() until the task has reported back."""
        return self.task is not None

    def start(self) -> None:
        """Create the algorithm and queue its task; a missing provider is reported like any failed run."""
        self.algorithm = QgsApplication.processingRegistry().createAlgorithmById(self.algorithm_id)
        if self.algorithm is None:
            self.feedback.errors.append(
                f"The Processing algorithm {self.algorithm_id} is not registered: enable the SAR Compressor "
                "plugin (Plugins > Manage and Install Plugins) and check the Processing toolbox."
            )
            self._finish(False, {})
            return
        task = QgsProcessingAlgRunnerTask(self.algorithm, self.parameters, self.context, self.feedback)
        if task.isCanceled():  # prepareAlgorithm failed (its error is in the feedback); such a task never reports
            self._finish(False, {})
            return
        self.task = task
        self.task.progressChanged.connect(self.progressChanged)
        self.task.executed.connect(self._finish)
        AlgorithmRun._running.add(self)
        QgsApplication.taskManager().addTask(self.task)

    def _on_progress_text(self, text: str) -> None:
        """Main thread: keep the stage, and show it in QGIS's task manager next to the bar."""
        self.stage = text
        if self.task is not None:
            self.task.setDescription(f"SAR Compressor: {text}")
        self.stageChanged.emit(text)

    def cancel(self) -> None:
        """Ask the running task to stop; the algorithm checks the feedback within one batch."""
        if self.task is not None:
            self.cancel_requested = True
            self.task.cancel()

    def _finish(self, successful: bool, results: dict) -> None:
        # The task manager deletes the C++ task after this signal: drop the wrapper so nothing touches it.
        self.task = None
        AlgorithmRun._running.discard(self)
        for folder in filter(None, self.leftovers):
            shutil.rmtree(folder, ignore_errors=True)
        self.successful = bool(successful) and not self.feedback.isCanceled()
        self.results = dict(results or {})
        self.finished.emit(self.successful, self.results)

    @property
    def cancelled(self) -> bool:
        """Cancelled by the panel, or by QGIS (the task manager's cancel button, or quitting QGIS with the task
        running): both cancel the feedback. Not where the algorithm reported errors: a failed prepare cancels the
        feedback too, and its error must reach the user."""
        return not self.feedback.errors and (self.cancel_requested or self.feedback.isCanceled())

    def error_message(self) -> str:
        """What went wrong, for the panel: the algorithm's own errors, or a plain 'cancelled'."""
        if self.feedback.errors:  # a failed prepare cancels the task too: its error comes first
            return "\n".join(self.feedback.errors)
        if self.cancelled:
            return "Cancelled."
        return "The run failed; see the Processing log (View > Panels > Log Messages) for details."
