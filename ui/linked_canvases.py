"""Two map canvases, original | reconstruction, that zoom and pan together.

Each canvas mirrors the other's extent on extentsChanged; a guard stops the mirrored change from bouncing back
(and from looping when a canvas adjusts the extent to its own aspect ratio).
"""

from __future__ import annotations

from qgis.core import QgsMapLayer, QgsRectangle
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

CANVAS_MIN_WIDTH = 150
"""Each canvas's narrowest width: side by side with the other, the panel fits a third of a 1366-pixel screen (at
240 the panel could not be made narrower than 484 pixels, a QGIS sweep)."""


class LinkedCanvases(QWidget):
    """Side-by-side canvases with a shared destination CRS and linked extents."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.left = self._make_canvas("original")
        self.right = self._make_canvas("reconstruction")
        self._syncing = False
        self.left.extentsChanged.connect(self._left_changed)
        self.right.extentsChanged.connect(self._right_changed)

        self.titles = [QLabel(self), QLabel(self)]
        splitter = QSplitter(Qt.Horizontal, self)
        splitter.addWidget(self._titled(self.titles[0], self.left))
        splitter.addWidget(self._titled(self.titles[1], self.right))
        self.set_titles("Original", "Reconstruction")
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    def show_pair(self, original: QgsMapLayer, reconstruction: QgsMapLayer, extent: QgsRectangle | None = None) -> None:
        """Show both layers in the original's CRS (none for rasters without one) at `extent` (another view of the
        same pair keeps the zoom), by default the original's extent."""
        for canvas, layer in ((self.left, original), (self.right, reconstruction)):
            canvas.setDestinationCrs(original.crs())
            canvas.setLayers([layer])
        self.set_extent(extent if extent is not None and not extent.isEmpty() else original.extent())

    def set_titles(self, left: str, right: str) -> None:
        """The captions above the two canvases."""
        for label, text in zip(self.titles, (left, right)):
            label.setText(f"<b>{text}</b>")

    def clear(self) -> None:
        """Drop the layers (before the dock lets go of a reconstruction layer it owns)."""
        for canvas in (self.left, self.right):
            canvas.setLayers([])
            canvas.refresh()

    def set_extent(self, extent: QgsRectangle) -> None:
        """Zoom both canvases to `extent` and redraw."""
        self.left.setExtent(extent)
        self.right.setExtent(extent)
        self.refresh()

    def refresh(self) -> None:
        """Redraw both canvases."""
        self.left.refresh()
        self.right.refresh()

    # bound methods, not lambdas: a lambda holding self in a Qt connection is a cycle Python cannot collect
    def _left_changed(self) -> None:
        self._mirror(self.left, self.right)

    def _right_changed(self) -> None:
        self._mirror(self.right, self.left)

    def _mirror(self, source: QgsMapCanvas, target: QgsMapCanvas) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            target.setExtent(source.extent())
            target.refresh()
        finally:
            self._syncing = False

    def _make_canvas(self, name: str) -> QgsMapCanvas:
        canvas = QgsMapCanvas(self)
        canvas.setObjectName(f"sar_compressor_{name}_canvas")
        canvas.setCanvasColor(Qt.white)
        canvas.enableAntiAliasing(True)
        canvas.setMinimumSize(CANVAS_MIN_WIDTH, 240)
        return canvas

    def _titled(self, label: QLabel, canvas: QgsMapCanvas) -> QWidget:
        box = QWidget(self)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        label.setAlignment(Qt.AlignCenter)
        layout.addWidget(label)
        layout.addWidget(canvas, 1)
        return box
