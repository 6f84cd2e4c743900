"""QGIS plugin object: Processing provider, Raster menu entry and toolbar toggle for the dock panel.

Everything heavy is lazy: the provider imports no torch, the dock is built when first opened, so QGIS starts
quickly and still starts when torch is missing (one message-bar warning says what to install).
"""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QPushButton

from .ui.dependencies import add_to_path, dependencies_folder, qgis_profile_folder

add_to_path(dependencies_folder(qgis_profile_folder()))  # what "Install dependencies" installed, before any import

from .algorithms.common import ICON_PATH, dependency_message, missing_dependencies  # noqa: E402
from .algorithms.provider import SARCompressorProvider  # noqa: E402

MENU = "&SAR Compressor"
TITLE = "SAR Compressor"


class SARCompressorPlugin:
    """Owns what the plugin adds to QGIS and removes all of it in unload()."""

    def __init__(self, iface) -> None:
        self.iface = iface  # None under qgis_process
        self.provider: SARCompressorProvider | None = None
        self.action: QAction | None = None
        self.dock = None
        self.sarz_layers = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API names)
        """Register the provider (also called alone by qgis_process)."""
        if self.provider is None:
            self.provider = SARCompressorProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        self.action = QAction(QIcon(str(ICON_PATH)), "SAR Compressor Panel", self.iface.mainWindow())
        self.action.setObjectName("sarCompressorPanelAction")
        self.action.setToolTip("Show or hide the SAR Compressor panel (compress, decompress, compare)")
        self.action.setCheckable(True)
        self.action.triggered.connect(self.set_panel_visible)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        self.iface.addToolBarIcon(self.action)  # the Plugins toolbar: shown in a fresh profile (Raster is not)
        from .ui.sarz_layers import SarzLayers  # dropped .sarz files open as layers (issue 18)

        self.sarz_layers = SarzLayers(self.iface, MENU)
        self.sarz_layers.register()
        missing = missing_dependencies()
        if missing:
            self._offer_install(dependency_message(missing))

    def _offer_install(self, message: str) -> None:
        """The message-bar warning, with a button that installs what is missing into the QGIS profile."""
        item = QgsMessageBar.createMessage(TITLE, message)
        button = QPushButton("Install dependencies", item)
        button.clicked.connect(self.install_dependencies)
        item.layout().addWidget(button)
        self.iface.messageBar().pushWidget(item, Qgis.Warning)

    def install_dependencies(self) -> None:
        """Install the missing packages into <profile>/python/dependencies (ui.dependencies), with a log."""
        from .ui.dependencies import install_dialog, missing_packages

        packages = missing_packages()
        if packages and install_dialog(self.iface.mainWindow(), packages) and self.dock is not None:
            self.dock.refresh_environment()

    def set_panel_visible(self, visible: bool) -> None:
        """Show or hide the dock, building it the first time it is shown."""
        if visible and self.dock is None:
            from .ui.dock import SARCompressorDock

            self.dock = SARCompressorDock(self.iface, self.iface.mainWindow())
            self.dock.setObjectName("SARCompressorDock")
            self.dock.visibilityChanged.connect(self.action.setChecked)
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        if self.dock is not None:
            self.dock.setVisible(visible)
            if visible:
                self.dock.raise_()

    def unload(self) -> None:
        """Remove the dock (its comparison's preview files with it), menu entry, toolbar icon, .sarz drop handler
        and provider, so a reload starts clean."""
        if self.sarz_layers is not None:
            self.sarz_layers.unregister()
            self.sarz_layers = None
        if self.dock is not None:
            self.dock.clear_results()
            self.dock.visibilityChanged.disconnect(self.action.setChecked)
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
