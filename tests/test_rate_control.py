"""Compression to a bit budget: the step search on its own, then through the codec (files and arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from sar_compressor.engine import api
from sar_compressor.engine.codec.passes import rate_control
from sar_compressor.engine.errors import CancelledError, InputError
from sar_compressor.engine.simulate import write_scene


def _power_law(scale: float, slope: float, calls: list[float]):
    def bpp_at(step: float) -> float:
        calls.append(step)
        return scale * step**slope

    return bpp_at


@pytest.mark.parametrize("slope", [-1.0, -1.5, -2.5])
@pytest.mark.parametrize("target", [0.05, 0.25, 1.0, 4.0])
def test_search_lands_within_tolerance_under_the_target(slope, target):
    calls: list[float] = []
    bpp_at = _power_law(0.01, slope, calls)
    step = rate_control.find_step(bpp_at, target)
    assert target * (1 - rate_control.TOLERANCE) <= bpp_at(step) <= target
    assert len(calls) - 1 <= rate_control.MAX_PASSES


def test_search_on_a_staircase_returns_the_finest_step_within_budget():
    """Real sizes move in steps (whole bytes, a table switching); no step may hit the 1 % window."""

    def bpp_at(step: float) -> float:
        return float(np.floor(0.02 * step**-1.5 * 4) / 4)  # quarter-bit stairs

    step = rate_control.find_step(bpp_at, 1.1)
    assert bpp_at(step) <= 1.1


def test_a_cliff_in_the_sizes_is_bracketed_and_halved_to_the_target():
    """A smooth sea scene's bits fall off a cliff with the step (0.80 bpp at step 0.36, 0.0055 at 0.72): every
    secant landed on the side of too many bits, the far end never moved, and after 10 passes the file was the
    0.0055 bpp try for a target of 0.5 (measured on a simulated low-backscatter sea, and single-look water)."""
    calls: list[float] = []

    measured = [
        (0.1, 2.8803),
        (0.3224, 1.0185),
        (0.3601, 0.8005),
        (0.3849, 0.6710),
        (0.4049, 0.5658),
        (0.4131, 0.5286),
        (0.4174, 0.5037),
        (0.4667, 0.2610),
        (0.5273, 0.1043),
        (0.7226, 0.0055),
    ]
    steps, sizes = (np.log([m[i] for m in measured]) for i in (0, 1))

    def bpp_at(step: float) -> float:  # the sea's sizes, as measured, between its tries (log-log)
        calls.append(step)
        return float(np.exp(np.interp(np.log(step), steps, sizes)))

    step = rate_control.find_step(bpp_at, 0.5)
    assert 0.5 * (1 - rate_control.TOLERANCE) <= bpp_at(step) <= 0.5
    assert len(calls) - 1 <= 9  # the plain secant took 11 passes (to 16), 10 left the file at 0.0055 bpp


def test_unreachable_targets():
    """Below what the coarsest step needs: InputError naming the target and what it would take. Above what
    the finest step gives: the finest step (the most the codec can spend)."""
    with pytest.raises(InputError, match=r"0.001 bits per pixel.*fewest tried took 0.0500 bpp \(step 1 of"):
        rate_control.find_step(lambda s: 0.05 / s, 0.001)
    assert rate_control.find_step(lambda s: 0.001 / s, 100.0) == rate_control.FINEST_STEP
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="positive"):
            rate_control.find_step(lambda s: 1.0, bad)


def test_sizes_that_barely_move_end_in_the_unreachable_message():
    """A mask-like raster (0/1 values) codes to the same size at every step but for a few bits: the secant's
    nearly flat slope sent math.exp out of range, an OverflowError traceback instead of the one-line refusal; the
    message paired the fewest bits (a finer step's, the header shrinking) with the coarsest step."""
    with pytest.raises(InputError, match=r"fewest tried took 0.7653 bpp \(step 1 of"):
        rate_control.find_step(lambda s: 0.7653 - 1e-9 * s, 0.5)
    with pytest.raises(InputError, match=r"fewest tried took 2568.0000 bpp \(step 0.1 of"):
        rate_control.find_step(lambda s: 2568.0 + 24.0 * (s > 0.1), 0.5)


def test_nearest_quality_follows_the_ladder():
    assert rate_control.nearest_quality(0.8) == 1
    assert rate_control.nearest_quality(0.12) == 6  # between 0.14 (6) and 0.1 (7), nearer 0.14 in log
    assert rate_control.nearest_quality(0.001) == 12


def test_array_at_a_target_fills_it_and_decodes_to_its_reconstruction():
    from sar_compressor.engine.simulate import simulate_scene

    arr = simulate_scene(256, 320, seed=4)[0]
    for target in (0.5, 1.5):
        r = api.compress_array(arr, target_bpp=target)
        assert target * (1 - rate_control.TOLERANCE) <= r.stats.bpp <= target
        back = api.decompress_array(r.data)
        np.testing.assert_array_equal(back, r.reconstruction)


def test_file_at_a_target_reports_progress_and_fails_cleanly(tmp_path):
    src = write_scene(tmp_path / "scene.tif", 200, 160, seed=2)
    out = tmp_path / "scene.sarz"
    progress, messages = [], []
    stats = api.compress_file(
        src,
        out,
        target_bpp=1.0,
        progress=lambda d, t: progress.append(d / t),
        log=messages.append,
    )
    assert 0.99 <= stats.bpp <= 1.0 and out.stat().st_size * 8 == round(stats.bpp * 200 * 160)
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(m.startswith("rate control: step") for m in messages)
    out.unlink()
    with pytest.raises(InputError, match="below what this raster can be coded in"):
        api.compress_file(src, out, target_bpp=1e-4)
    with pytest.raises(CancelledError):
        api.compress_file(src, out, target_bpp=1.0, cancel=lambda: True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_a_file_well_under_its_target_says_why():
    """A target above what the finest step takes (100 bpp on a 160x128 scene: about 9 bpp) was met silently with
    the finest step's file; a search out of passes short of the target said nothing either."""
    at_finest = rate_control.shortfall_warning(rate_control.FINEST_STEP, 9.19, 100.0, 4)
    assert "9.1900 bits per pixel, under the target of 100" in at_finest and "finest step" in at_finest
    out_of_passes = rate_control.shortfall_warning(0.05, 0.8, 1.0, rate_control.MAX_PASSES)
    assert f"stopped after {rate_control.MAX_PASSES} passes at step 0.05" in out_of_passes
    assert rate_control.shortfall_warning(0.05, 0.96, 1.0, 3) is None  # within 5 %: what was asked


def test_a_file_target_beyond_the_finest_step_warns(tmp_path):
    src = write_scene(tmp_path / "scene.tif", 160, 128, seed=3)
    warnings: list[str] = []
    stats = api.compress_file(src, tmp_path / "scene.sarz", target_bpp=100.0, warn=warnings.append)
    assert stats.bpp < 50 and [w for w in warnings if "under the target of 100" in w and "finest step" in w]
    warnings.clear()
    api.compress_file(src, tmp_path / "scene.sarz", target_bpp=1.0, warn=warnings.append)
    assert not [w for w in warnings if "under the target" in w]
