"""The plugin through QGIS's own loader: provider, Raster menu, toolbar, dock, clean unload; without torch.

The checkout may live in a folder of any name, so QGIS sees it through a temporary plugins folder holding a
symlink `sar_compressor -> <repo>`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import MagicMock

import pytest
import qgis.utils
from qgis.core import Qgis, QgsApplication
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QEvent

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "sar_compressor"
ALGORITHMS = {"sar_compressor:compress", "sar_compressor:decompress", "sar_compressor:evaluate"}
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"  # QGIS's own Python plugins (processing)
# stub methods of pytest-qgis's iface (MagicMocks) that the plugin calls
IFACE_CALLS = (
    "addPluginToRasterMenu",
    "removePluginRasterMenu",
    "addToolBarIcon",
    "removeToolBarIcon",
)


def plugin_folder(root: Path) -> Path:
    """A plugins folder in which QGIS finds this checkout as `sar_compressor`."""
    root.mkdir(parents=True, exist_ok=True)
    link = root / PLUGIN
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    return root


def _own_modules() -> dict:
    return {k: v for k, v in sys.modules.items() if k == PLUGIN or k.startswith(PLUGIN + ".")}


def _flush_deletes() -> None:
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QCoreApplication.processEvents()


@contextmanager
def qgis_plugin_path(folder: Path, iface) -> Iterator[None]:
    """QGIS's plugin machinery pointed at `folder`; restores modules and paths afterwards.

    Other test modules import `sar_compressor` (the editable install), and loading/unloading through
    qgis.utils replaces those modules: they are put back so later tests keep consistent classes. A provider
    left registered by another module's fixture is removed, so registration is tested from scratch.
    """
    saved_modules, saved_paths, saved_sys_path = _own_modules(), list(qgis.utils.plugin_paths), list(sys.path)
    registry = QgsApplication.processingRegistry()
    if registry.providerById(PLUGIN) is not None:
        assert registry.removeProvider(PLUGIN)
    for name in saved_modules:
        del sys.modules[name]
    qgis.utils.plugin_paths.append(str(folder))
    sys.path.insert(0, str(folder))  # as QGIS does; ahead of a checkout that pytest put on the path
    qgis.utils.updateAvailablePlugins()
    iface.messageBar().clear_messages()
    for name in IFACE_CALLS:  # pytest-qgis's toolbar methods are plain no-ops: record the calls
        setattr(iface, name, MagicMock(name=name))
    try:
        yield
    finally:
        if PLUGIN in qgis.utils.active_plugins:
            qgis.utils.unloadPlugin(PLUGIN)
        for name in _own_modules():
            del sys.modules[name]
        sys.modules.update(saved_modules)
        qgis.utils.plugin_paths[:] = saved_paths
        sys.path[:] = saved_sys_path
        qgis.utils.updateAvailablePlugins()


@pytest.fixture
def qgis_loader(tmp_path, qgis_iface) -> Iterator[str]:
    """The checkout on QGIS's plugin path (through the symlink folder)."""
    folder = plugin_folder(tmp_path / "plugins")
    with qgis_plugin_path(folder, qgis_iface):
        yield str(folder)


def test_plugin_loads_registers_and_unloads_cleanly(qgis_loader, qgis_iface):
    registry = QgsApplication.processingRegistry()
    assert qgis.utils.loadPlugin(PLUGIN)
    assert Path(sys.modules[PLUGIN].__file__).parent == Path(qgis_loader) / PLUGIN  # found via the plugin path
    assert qgis.utils.startPlugin(PLUGIN)
    plugin = qgis.utils.plugins[PLUGIN]

    provider = registry.providerById(PLUGIN)
    assert provider is not None and provider.name() == "SAR Compressor"
    assert {alg.id() for alg in provider.algorithms()} == ALGORITHMS
    assert not provider.icon().isNull()
    action, add_sarz = plugin.action, plugin.sarz_layers.action
    assert qgis_iface.addPluginToRasterMenu.call_args_list == [
        (("&SAR Compressor", action),),
        (("&SAR Compressor", add_sarz),),  # .sarz files open from a menu too, not only by drop and Browser
    ]
    qgis_iface.addToolBarIcon.assert_called_once_with(action)
    assert action.isCheckable() and not action.icon().isNull()
    assert qgis_iface.messageBar().get_messages(Qgis.Warning) == []  # torch is installed here

    action.trigger()  # the toolbar toggle builds and shows the dock lazily
    dock = plugin.dock
    assert type(dock).__name__ == "SARCompressorDock" and not dock.isHidden() and action.isChecked()
    action.trigger()
    assert dock.isHidden() and not action.isChecked()
    shown = sys.modules[f"{PLUGIN}.ui.comparison"].ComparisonBuilder(None, 1, None, "intensity")
    dock._comparison, previews = shown, Path(shown.folder)  # as a run leaves it (its previews' folder)
    del shown

    assert qgis.utils.unloadPlugin(PLUGIN)
    _flush_deletes()
    assert not previews.exists()
    assert registry.providerById(PLUGIN) is None
    assert registry.algorithmById("sar_compressor:compress") is None
    assert sorted(qgis_iface.removePluginRasterMenu.call_args_list, key=str) == sorted(
        qgis_iface.addPluginToRasterMenu.call_args_list, key=str
    )
    qgis_iface.removeToolBarIcon.assert_called_once_with(action)
    assert sip.isdeleted(dock) and sip.isdeleted(action) and sip.isdeleted(add_sarz)
    assert PLUGIN not in qgis.utils.plugins and PLUGIN not in sys.modules


def test_plugin_reloads_without_leaks(qgis_loader, qgis_iface):
    registry = QgsApplication.processingRegistry()
    for _ in range(2):
        assert qgis.utils.loadPlugin(PLUGIN) and qgis.utils.startPlugin(PLUGIN)
        qgis.utils.plugins[PLUGIN].action.trigger()
        assert len([p for p in registry.providers() if p.id() == PLUGIN]) == 1
        assert qgis.utils.unloadPlugin(PLUGIN)
        _flush_deletes()
        assert registry.providerById(PLUGIN) is None
    assert qgis_iface.addPluginToRasterMenu.call_count == qgis_iface.removePluginRasterMenu.call_count == 4


BLOCKER = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""

WITHOUT_TORCH = """
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from qgis.core import Qgis, QgsApplication, QgsProcessingException
from qgis.PyQt.QtWidgets import QMainWindow, QPushButton

app = QgsApplication([], False)
app.initQgis()
import qgis.utils


class MessageBar:
    # records every message with its level

    def __init__(self):
        self.messages = []

    def pushWarning(self, title, text):
        self.messages.append((Qgis.Warning, f"{title}: {text}"))

    def pushMessage(self, title, text="", level=Qgis.Info, duration=-1):
        self.messages.append((level, f"{title}: {text}"))

    def pushWidget(self, item, level=Qgis.Info, duration=0):
        buttons = [button.text() for button in item.findChildren(QPushButton)]
        self.messages.append((level, f"{item.title()}: {item.text()} {buttons}"))


class Iface:
    # the few parts of QgisInterface the plugin touches; everything else is a no-op

    def __init__(self):
        self.window, self.bar = QMainWindow(), MessageBar()

    def mainWindow(self):
        return self.window

    def messageBar(self):
        return self.bar

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


qgis.utils.iface = iface = Iface()
plugins, scene, sarz = sys.argv[1:4]
qgis.utils.plugin_paths.append(plugins)
sys.path.insert(0, plugins)
qgis.utils.updateAvailablePlugins()
assert qgis.utils.loadPlugin("sar_compressor") and qgis.utils.startPlugin("sar_compressor")
messages = iface.messageBar().messages
assert len(messages) == 1 and messages[0][0] == Qgis.Warning, messages
ADVICE = "python3 -m pip install --target PROFILE/python/dependencies constriction"
assert ADVICE in messages[0][1] and "torch" not in messages[0][1], messages
assert "['Install dependencies']" in messages[0][1], messages  # the one-click installer is offered
print("WARNING:", messages[0][1])
registry = QgsApplication.processingRegistry()
assert registry.providerById("sar_compressor") is not None

sys.path.append(QGIS_PLUGINS)
import processing
from processing.core.Processing import Processing
Processing.initialize()
runs = {
    "sar_compressor:compress": {"INPUT": scene, "OUTPUT": sarz + ".out.sarz"},
    "sar_compressor:decompress": {"INPUT": sarz, "OUTPUT": sarz + ".tif"},
}
for alg, params in runs.items():
    try:
        processing.run(alg, params)
    except QgsProcessingException as exc:
        assert ADVICE in str(exc) and "torch" not in str(exc), (alg, str(exc))
        print("REFUSED:", alg)
    else:
        raise AssertionError(alg + " ran without constriction")
# the metrics need no torch
html = sarz + ".html"
results = processing.run(
    "sar_compressor:evaluate", {"ORIGINAL": scene, "RECONSTRUCTION": scene, "OUTPUT": html}
)
with open(html) as report:
    assert results["SSIM"] == 1.0 and report.read().count("<tr>") == 8, results  # 8 metrics, multilook included
print("EVALUATED")
assert qgis.utils.unloadPlugin("sar_compressor")
assert registry.providerById("sar_compressor") is None
assert "torch" not in sys.modules
print("OK")
"""


def _run_python(code: str, *args: str, tmp_path: Path, blocked: set[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"))
    script = f"BLOCKED = {sorted(blocked)!r}\nQGIS_PLUGINS = {QGIS_PLUGINS!r}\n{BLOCKER}\n{code}"
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=240)


def test_plugin_without_torch_warns_once_and_codec_algorithms_refuse(tmp_path):
    from sar_compressor.engine.simulate import write_scene

    scene = write_scene(tmp_path / "scene.tif", 64, 64, seed=1)
    sarz = tmp_path / "scene.sarz"
    sarz.write_bytes(b"SARZ not really")
    plugins = plugin_folder(tmp_path / "plugins")
    proc = _run_python(
        WITHOUT_TORCH,
        str(plugins),
        str(scene),
        str(sarz),
        tmp_path=tmp_path,
        blocked={"torch", "constriction"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("REFUSED:") == 2 and "EVALUATED" in proc.stdout, proc.stdout
    assert proc.stdout.rstrip().endswith("OK"), proc.stdout


ENGINE_WITHOUT_QGIS = """
import importlib, pkgutil, sys
import sar_compressor
import sar_compressor.engine as engine

names = [m.name for m in pkgutil.walk_packages(engine.__path__, "sar_compressor.engine.")]
for name in names:
    importlib.import_module(name)
assert not any(m.split(".")[0] in ("qgis", "PyQt5") for m in sys.modules)
print("IMPORTED", " ".join(sorted(names)))
"""


def test_engine_imports_without_qgis(tmp_path):
    plugins = plugin_folder(tmp_path / "plugins")
    script = f"import sys\nsys.path.insert(0, {str(plugins)!r})\n{ENGINE_WITHOUT_QGIS}"
    proc = _run_python(script, tmp_path=tmp_path, blocked={"qgis", "PyQt5"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = set(proc.stdout.split()[1:])
    modules = (
        "api",
        "codec.passes.encode_pass",
        "codec.passes.decode_pass",
        "cli",
        "metrics",
        "codec.format.container",
    )
    expected = {f"sar_compressor.engine.{m}" for m in modules}
    assert expected <= imported, proc.stdout
