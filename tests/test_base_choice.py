"""The base the refinement layer is coded over: flat files need no network, the trial keeps the cheaper base."""

from __future__ import annotations

import numpy as np
import pytest

from sar_compressor.engine import codec
from sar_compressor.engine.base_choice import Trial, run_trial, sample_strips
from sar_compressor.engine.compressor import SARCompressor
from sar_compressor.engine.container import ContainerReader
from sar_compressor.engine.encode_pass import BandSource, EncodeOptions, EncodePass
from sar_compressor.engine.errors import InputError
from sar_compressor.engine.raster_io import RasterInfo
from sar_compressor.engine.simulate import simulate_scene


@pytest.fixture(scope="module")
def comp(tiny_model_path) -> SARCompressor:
    return SARCompressor(tiny_model_path, device="cpu")


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return simulate_scene(600, 160, seed=3)[0]


def _pass(arr: np.ndarray, comp: SARCompressor, base: str) -> EncodePass:
    info = RasterInfo(width=arr.shape[1], height=arr.shape[0], count=1, dtype=str(arr.dtype), nodata=None)
    source = BandSource(info, 1, lambda r0, r1: arr[max(0, r0) : min(arr.shape[0], r1)])
    return EncodePass.plan(source, comp, EncodeOptions(5, "auto", "percentile", "block", base))


def test_sample_strips_spread_over_the_raster():
    assert sample_strips(1) == [0]
    assert sample_strips(2) == [0, 1]
    assert sample_strips(3) == [1, 2]
    assert sample_strips(10) == [3, 6]


def test_flat_base_runs_no_network_and_round_trips(comp, scene):
    result = codec.compress_array(scene, compressor=comp, base="flat")
    assert result.stats.base == "flat" and result.stats.seconds_network == 0.0
    with ContainerReader(result.data) as reader:
        assert reader.header["base"] == "flat" and reader.header["stats"]["base_trial"] is None
        assert all(reader.read_chunk(k)[8:12] == bytes(4) for k in range(reader.n_chunks))  # latents: 0 B
    before = comp.seconds_network
    np.testing.assert_array_equal(codec.decompress_array(result.data, compressor=comp), result.reconstruction)
    assert comp.seconds_network == before


def test_auto_keeps_the_base_with_the_lower_cost(comp, scene):
    result = codec.compress_array(scene, compressor=comp)
    trial = codec.read_header(result.data)["stats"]["base_trial"]
    assert trial["strips"] == [0, 1]  # 600 rows: two strips and set(trial["costs"]) == {"network", "flat"}
    assert result.stats.base == trial["chosen"] == min(trial["costs"], key=trial["costs"].get)
    assert result.stats.base == "flat"  # an untrained network predicts nothing worth its latents
    np.testing.assert_array_equal(codec.decompress_array(result.data, compressor=comp), result.reconstruction)


def test_trial_picks_the_network_when_it_predicts_well(comp, scene):
    enc = _pass(scene, comp, "network")
    enc.decode_raw = lambda prev, strip, nxt: enc.refine_target(strip, strip.orig_db)  # a perfect network
    trial = run_trial(enc)
    assert trial.best == "network" and trial.costs["network"] < trial.costs["flat"]
    assert Trial([0], {"network": 2.0, "flat": 1.0}).best == "flat"


def test_unknown_base_is_refused(comp, scene):
    with pytest.raises(InputError, match="base must be one of auto, network, flat"):
        codec.compress_array(scene, compressor=comp, base="jpeg")
