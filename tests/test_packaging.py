"""`make package`: the zip the QGIS plugin repository takes, and that it installs and loads in QGIS.

`make package` archives git HEAD. To test what is in the working tree (committed or not) without touching
this repository, the files git would commit are copied into a scratch repository, committed there, and
`make package` runs in it.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import qgis.utils
from qgis.core import QgsApplication
from test_plugin import ALGORITHMS, PLUGIN, qgis_plugin_path

REPO = Path(__file__).resolve().parents[1]
REQUIRED = (
    "metadata.txt",
    "__init__.py",
    "sar_compressor_plugin.py",
    "engine/__init__.py",
    "engine/api.py",
    "engine/codec/passes/encode_pass.py",
    "engine/codec/entropy/refine.py",
    "engine/io/raster_io.py",
    "algorithms/provider.py",
    "ui/dock.py",
    "resources/icon.svg",
    "LICENSE",  # plugins.qgis.org refuses a package without one
)
DEV_PARTS = {
    "tests",
    "__pycache__",
    ".git",
    ".ci",
    ".venv",
    "build",
    "dist",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".qgis-settings",
}
DEV_FILES = {"Makefile", "pyproject.toml", ".gitignore", ".gitattributes"}
METADATA_KEYS = (
    "name",
    "qgisMinimumVersion",
    "description",
    "about",
    "version",
    "author",
    "email",
    "repository",
    "tracker",
)


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The zip `make package` builds from the current working tree."""
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.skip("make and git are needed to build the package")
    scratch = tmp_path_factory.mktemp("checkout") / "anyname"  # the clone's folder name does not matter
    scratch.mkdir()
    for name in _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO).split("\0"):
        src = REPO / name
        if name and src.is_file():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, scratch / name)
    _git("init", "-q", cwd=scratch)
    _git("add", "--all", "--force", cwd=scratch)  # exactly the copied files, tracked ones even if ignored
    _git(
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.org",
        "commit",
        "-q",
        "-m",
        "snapshot",
        cwd=scratch,
    )
    proc = subprocess.run(["make", "package"], cwd=scratch, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    zips = list((scratch / "dist").glob("sar_compressor-*.zip"))
    assert len(zips) == 1, proc.stdout
    return zips[0]


def test_zip_has_the_plugin_and_no_dev_files(package):
    with zipfile.ZipFile(package) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        metadata = archive.read(f"{PLUGIN}/metadata.txt").decode("utf-8")
    assert all(n.startswith(f"{PLUGIN}/") for n in names)  # one top folder named like the package
    inside = {n[len(PLUGIN) + 1 :] for n in names}
    assert set(REQUIRED) <= inside
    dev = [n for n in inside if DEV_PARTS & set(PurePosixPath(n).parts) or n in DEV_FILES or n.endswith(".pyc")]
    assert not dev, f"development files in the package: {sorted(dev)[:10]}"

    parser = configparser.ConfigParser()
    parser.read_string(metadata)
    general = parser["general"]
    assert all(general.get(key) for key in METADATA_KEYS)
    assert general["changelog"] and general["about"]  # read through interpolation, as plugins.qgis.org reads them:
    # a bare percent sign made the whole file unreadable there, and QGIS's plugin manager showed no changelog
    assert general["qgisMinimumVersion"] == "3.22" and general["hasProcessingProvider"] == "yes"
    assert general["icon"] in inside
    assert package.name == f"{PLUGIN}-{general['version']}.zip"
    assert {"docs/FORMAT.md", "docs/INTERFACES.md"} <= inside  # README links them, and these figures:
    assert {"bench/results/rd_2026-12-07.png", "bench/results/latest.md", "bench/results/crop_2026-12-07.png"} <= inside
    assert not any(n.endswith(".json") for n in inside if n.startswith("bench/results/"))


def test_the_python_package_has_the_plugins_version():
    """pyproject's version is the plugin's (it said 0.6.0 at 0.7.0: what pip and Dask workers report)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11; the project runs on 3.9 too

    parser = configparser.ConfigParser()
    parser.read(REPO / "metadata.txt")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == parser["general"]["version"]


def test_unzipped_plugin_loads_with_qgis_loader(package, tmp_path, qgis_iface):
    plugins = tmp_path / "plugins"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(plugins)
    registry = QgsApplication.processingRegistry()
    with qgis_plugin_path(plugins, qgis_iface):
        assert qgis.utils.loadPlugin(PLUGIN)
        assert Path(sys.modules[PLUGIN].__file__).parent == plugins / PLUGIN  # the installed copy, not the repo
        assert qgis.utils.startPlugin(PLUGIN)
        provider = registry.providerById(PLUGIN)
        assert provider is not None and {alg.id() for alg in provider.algorithms()} == ALGORITHMS
        assert qgis.utils.unloadPlugin(PLUGIN)
        assert registry.providerById(PLUGIN) is None
