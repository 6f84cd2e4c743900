"""The engine's folders show the codec's anatomy, and its imports point one way (issue 17 item 6).

Each layer imports only itself and the layers listed for it (lower in this list), never one above:

    front ends        engine/*.py outside the foundation: api (compress_file, decompress_file, ...), cli, batch,
                      strip_tasks, zarr_codec, gdal_vrt, verify, inspect, input_checks, simulate -> anything
    codec.passes      -> codec.restoration, codec.radiometry, codec.format, codec.entropy, codec.transform, io,
                         foundation
    codec.restoration -> codec.entropy, codec.transform, foundation
    codec.radiometry  -> codec.format, codec.entropy, codec.transform, io, foundation
    codec.format      -> codec.entropy, codec.transform, io, foundation
    codec.entropy     -> codec.transform, foundation
    codec.transform   -> foundation
    io                -> foundation
    foundation        errors, preprocessing, metrics, json_text -> one another only

So the transform, the entropy coders and the file format never import the passes; io never imports the codec; no
two engine modules import each other, directly or in a circle (lazy imports inside functions count too). Nothing
in the engine imports QGIS, Qt, the Processing algorithms, the dock or training (plugin and training import the
engine, not the reverse); the one arrow out is the CLI's `bench` subcommand, which runs bench.run. Checked on the
source with ast, so a violation fails here even where no test happens to import the module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "engine"
FOUNDATION = {"errors", "preprocessing", "metrics", "json_text"}
ALLOWED = {
    "foundation": {"foundation"},
    "io": {"io", "foundation"},
    "codec.transform": {"codec.transform", "foundation"},
    "codec.entropy": {"codec.entropy", "codec.transform", "foundation"},
    "codec.format": {"codec.format", "codec.entropy", "codec.transform", "io", "foundation"},
    "codec.radiometry": {"codec.radiometry", "codec.format", "codec.entropy", "codec.transform", "io", "foundation"},
    "codec.passes": {
        "codec.passes",
        "codec.restoration",
        "codec.radiometry",
        "codec.format",
        "codec.entropy",
        "codec.transform",
        "io",
        "foundation",
    },
    "codec.restoration": {"codec.restoration", "codec.entropy", "codec.transform", "foundation"},
    "codec": {"codec"},  # engine/codec/__init__.py: a docstring, nothing imported
}
FORBIDDEN_OUTSIDE = ("qgis", "PyQt5", "sar_compressor.algorithms", "sar_compressor.ui", "sar_compressor.training")
ALLOWED_OUTSIDE = {("sar_compressor.engine.cli", "sar_compressor.bench.run")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["sar_compressor", *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports (top level or inside a function), as absolute names; `from package import
    module` counts as importing that module."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _layer(module: str) -> str:
    """The layer of an engine module: foundation, io, codec.<part>, or front end."""
    rest = module.removeprefix("sar_compressor.engine").lstrip(".").split(".")
    if rest[0] in FOUNDATION:
        return "foundation"
    if rest[0] == "io":
        return "io"
    if rest[0] == "codec":
        return "codec" if len(rest) == 1 else f"codec.{rest[1]}"
    return "front end"


def test_engine_folders_are_the_codecs_anatomy():
    """A reader finds each part by folder name, and every folder is a package the wheel ships."""
    for folder in ("io", "codec/transform", "codec/entropy", "codec/format", "codec/passes", "codec/restoration"):
        assert (ENGINE / folder / "__init__.py").is_file(), folder
    assert (ENGINE / "codec" / "radiometry.py").is_file() and (ENGINE / "api.py").is_file()
    packages = {".".join(["sar_compressor", *p.parent.relative_to(REPO).parts]) for p in ENGINE.rglob("__init__.py")}
    listed = set(re.findall(r'"(sar_compressor[\w.]*)"', (REPO / "pyproject.toml").read_text(encoding="utf-8")))
    assert packages <= listed, f"add to pyproject.toml's [tool.setuptools] packages: {sorted(packages - listed)}"


def test_no_import_cycle_between_engine_modules():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the DFS stack, 2 done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module] & set(graph)):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_engine_imports_nothing_of_the_plugin_or_training():
    for module, targets in _graph().items():
        for target in targets:
            if (module, target) in ALLOWED_OUTSIDE:
                continue
            bad = [f for f in FORBIDDEN_OUTSIDE if target == f or target.startswith(f + ".")]
            bad += ["bench"] * target.startswith("sar_compressor.bench")
            assert not bad, f"{module} imports {target}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_codec_layers_import_one_way(layer):
    graph = _graph()
    wrong = [
        f"{module} -> {target} ({_layer(target)})"
        for module, targets in graph.items()
        if _layer(module) == layer
        for target in targets
        if target in graph and _layer(target) not in ALLOWED[layer]
    ]
    assert not wrong, f"{layer} may import only {sorted(ALLOWED[layer])}: " + "; ".join(wrong)


def test_the_checker_sees_a_violation(tmp_path):
    """The import parser resolves relative imports the way Python does (a check that sees nothing proves nothing)."""
    probe = ENGINE / "codec" / "format" / "container.py"
    found = _imports(_module_name(probe), probe, set(_modules()))
    assert "sar_compressor.engine.errors" in found
    assert "sar_compressor.engine.codec.format.header_dictionary" in found
    fake = tmp_path / "engine" / "codec" / "entropy" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..passes import survey\nfrom ...io import raster_io\n")
    known = {"sar_compressor.engine.codec.passes.survey", "sar_compressor.engine.io.raster_io"}
    assert _imports("sar_compressor.engine.codec.entropy.x", fake, known) == known
    assert {_layer(m) for m in known} - ALLOWED["codec.entropy"] == {"codec.passes", "io"}


def test_moved_modules_still_find_the_plugin_folder():
    """The header records the plugin's version from metadata.txt, found from engine/codec/format/."""
    from sar_compressor.engine.codec.format.sarz_header import software_version

    meta = (REPO / "metadata.txt").read_text(encoding="utf-8")
    assert software_version() == re.search(r"^version=(.*)$", meta, re.M).group(1).strip()
