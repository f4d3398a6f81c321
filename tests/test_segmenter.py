"""The runtime's Python API: numpy in, numpy out; tiling; diameter rescaling; devices."""
import numpy as np
import pytest

import dataclasses

import msgspec

from cellpoint.runtime import Segmenter
from cellpoint.runtime.card import Postprocess
from cellpoint.runtime.decoding import Decoder, Instances, Params
from conftest import synthetic_nuclei


def _replace_card(monkeypatch, seg, **changes):
    """Give `seg` a package whose card has `changes` (cards are immutable)."""
    card = msgspec.structs.replace(seg.package.card, **changes)
    monkeypatch.setattr(seg, "package", dataclasses.replace(seg.package, card=card))


def test_segment_returns_labels_and_a_consistent_table(tiny_package):
    seg = Segmenter(tiny_package, device="cpu")
    assert seg.provider == "CPUExecutionProvider"
    image = synthetic_nuclei()[0]
    labels, table = seg.segment(image)
    assert labels.shape == image.shape and labels.dtype == np.uint32
    ids = np.unique(labels[labels > 0])
    assert list(table["id"]) == list(ids)
    for i, area in zip(table["id"], table["area"]):
        assert (labels == i).sum() == area


def test_tiled_maps_match_whole_image_maps(tiny_package):
    image = np.tile(synthetic_nuclei()[0], (3, 3))          # 288 x 384
    whole, _ = Segmenter(tiny_package, tile=1024)._predict_maps(image)
    tiled, _ = Segmenter(tiny_package, tile=160)._predict_maps(image)
    for name in whole:
        assert np.abs(whole[name] - tiled[name]).max() < 1e-3, name


def test_diameter_rescales_but_returns_full_size(tiny_package):
    image = synthetic_nuclei()[0]
    labels, _ = Segmenter(tiny_package).segment(image, diameter=36)
    assert labels.shape == image.shape


@pytest.mark.parametrize("bad, reason", [
    (np.zeros((0, 10), np.float32), "empty"),
    (np.zeros((2, 3, 4, 5), np.float32), "dimensions"),
    (np.full((16, 16), np.nan, np.float32), "NaN"),
])
def test_bad_images_get_clear_errors(tiny_package, bad, reason):
    with pytest.raises(ValueError, match=reason):
        Segmenter(tiny_package).segment(bad)


def test_cuda_request_without_cuda_is_a_clear_error(tiny_package):
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA"):
        Segmenter(tiny_package, device="cuda")


def test_median_diameter_of_a_table():
    from cellpoint.runtime.labels import median_diameter
    area = np.full(7, np.pi * 10 ** 2)
    assert median_diameter({"area": area}) == pytest.approx(20.0)
    assert median_diameter({"area": area[:3]}) is None        # too few cells to measure


def test_refine_diameter_segments_again_at_the_measured_size(tiny_package, monkeypatch):
    seg = Segmenter(tiny_package)
    calls = []
    one_cell = np.zeros((60, 60), np.uint32)
    for k in range(6):                                         # six 10x10 squares: diameter 2*sqrt(100/pi)
        one_cell[k * 10:k * 10 + 10, :10] = k + 1

    def fake_once(image, diameter, on_tile=None):
        calls.append(diameter)
        from cellpoint.runtime.labels import instance_table
        return one_cell, instance_table(one_cell)
    monkeypatch.setattr(seg, "_segment_once", fake_once)
    seg.segment(np.zeros((60, 60), np.float32), diameter=30, refine_diameter=True)
    assert calls[0] == 30 and calls[1] == pytest.approx(2 * np.sqrt(100 / np.pi))
    calls.clear()
    seg.segment(np.zeros((60, 60), np.float32), diameter=11.3, refine_diameter=True)
    assert calls == [11.3]                                     # within 10%: no second pass


def test_refine_diameter_does_not_chase_fragments(tiny_package, monkeypatch):
    from cellpoint.runtime.segmenter import MAX_REFINE_ZOOM
    seg = Segmenter(tiny_package)
    calls = []
    specks = np.zeros((60, 60), np.uint32)
    for k in range(6):                                         # six 2x2 specks: far under the model's cells
        specks[k * 10:k * 10 + 2, :2] = k + 1

    def fake_once(image, diameter, on_tile=None):
        calls.append(diameter)
        from cellpoint.runtime.labels import instance_table
        return specks, instance_table(specks)
    monkeypatch.setattr(seg, "_segment_once", fake_once)
    assert 2 * np.sqrt(4 / np.pi) < seg.diameter / MAX_REFINE_ZOOM
    result = seg.segment(np.zeros((60, 60), np.float32), diameter=12, refine_diameter=True)
    assert calls == [12] and result.diameter == 12


def test_refine_diameter_defaults_to_the_package_card(tiny_package, monkeypatch):
    seg = Segmenter(tiny_package)
    calls = []
    cells = np.zeros((60, 60), np.uint32)
    for k in range(6):
        cells[k * 10:k * 10 + 10, :10] = k + 1

    def fake_once(image, diameter, on_tile=None):
        calls.append(diameter)
        from cellpoint.runtime.labels import instance_table
        return cells, instance_table(cells)
    monkeypatch.setattr(seg, "_segment_once", fake_once)
    image = np.zeros((60, 60), np.float32)
    assert not seg.refines_diameter                            # cards without the key: fixed diameter
    seg.segment(image, diameter=30)
    assert len(calls) == 1
    _replace_card(monkeypatch, seg, refine_diameter=True)
    calls.clear()
    seg.segment(image, diameter=30)
    assert len(calls) == 2                                     # the card's default: a second pass
    calls.clear()
    seg.segment(image, diameter=30, refine_diameter=False)     # the caller overrides the card
    assert len(calls) == 1


def test_outline_contrast_in_the_postprocess_entry_refines_the_outlines(tiny_package, monkeypatch):
    import cellpoint.runtime.segmenter as segmenter_module
    seg = Segmenter(tiny_package)
    image, truth, _ = synthetic_nuclei()
    decoder = Decoder("truth", Params, lambda context, params: Instances(truth, np.ones(truth.shape, np.float32), {}))
    monkeypatch.setattr(seg, "package", dataclasses.replace(seg.package, decoder=decoder))
    plain, _ = seg.segment(image, diameter=18, refine_diameter=False)
    calls = []

    def spy(intensity, labels, diameter_px, contrast):
        calls.append((intensity.shape, intensity.dtype, diameter_px, contrast))
        return np.where(labels > 0, 1, 0).astype(labels.dtype)          # one instance: visibly used
    monkeypatch.setattr(segmenter_module, "refine_outlines_by_contrast", spy)
    _replace_card(monkeypatch, seg, postprocess=Postprocess(outline_contrast=0.3))
    labels, table = seg.segment(image, diameter=18, refine_diameter=False)
    assert calls == [(image.shape, np.float32, 18.0, 0.3)]
    assert plain.max() > 1 and labels.max() == 1 and list(table["id"]) == [1]


def test_segment_returns_a_result_that_unpacks_as_labels_and_table(tiny_package):
    seg = Segmenter(tiny_package)
    image, _, _ = synthetic_nuclei()
    result = seg.segment(image, diameter=20, refine_diameter=False)
    labels, table = result
    assert labels is result.labels and table is result.table
    assert result.diameter == 20.0 and result.model == seg.name == "tiny-nuclei"
    assert seg.segment(image, refine_diameter=False).diameter == seg.diameter


def test_closed_segmenter_refuses_to_segment_and_works_as_a_context_manager(tiny_package):
    from cellpoint.runtime import CellpointError
    image, _, _ = synthetic_nuclei()
    with Segmenter(tiny_package) as seg:
        seg.segment(image)
    with pytest.raises(CellpointError, match="closed"):
        seg.segment(image)


def test_one_segmenter_shared_by_threads_gives_the_same_results(tiny_package):
    from concurrent.futures import ThreadPoolExecutor
    seg = Segmenter(tiny_package, threads=1)
    images = [synthetic_nuclei(seed=k)[0] for k in range(6)]
    alone = [seg.segment(im, refine_diameter=True).labels for im in images]
    with ThreadPoolExecutor(4) as pool:
        shared = list(pool.map(lambda im: seg.segment(im, refine_diameter=True).labels, images * 2))
    for k, labels in enumerate(shared):
        assert np.array_equal(labels, alone[k % len(images)])


def test_with_decoder_params_changes_only_the_copy_and_checks_names_and_types(tiny_package):
    seg = Segmenter(tiny_package)
    loose = seg.with_decoder_params(foreground_threshold=-1.0, center_threshold=0.0)  # everything, every peak
    assert loose.decoder_params.center_threshold == 0.0 and seg.decoder_params.center_threshold == 0.3
    image, _, _ = synthetic_nuclei()
    assert loose.segment(image).labels.max() > seg.segment(image).labels.max()
    with pytest.raises(ValueError, match="no_such_param"):
        seg.with_decoder_params(no_such_param=1)
    with pytest.raises(ValueError, match="center_threshold"):
        seg.with_decoder_params(center_threshold="high")


def test_public_names_and_exception_family():
    import cellpoint.runtime as rt
    assert rt.__version__ and isinstance(rt.__version__, str)
    for error in (rt.PackageError, rt.ImageError, rt.DeviceError):
        assert issubclass(error, rt.CellpointError)
    from cellpoint.runtime.image_io import ImageReadError
    assert issubclass(ImageReadError, rt.ImageError)
    from cellpoint.runtime.segmenter import check_image
    with pytest.raises(rt.ImageError, match="dimensions"):
        check_image(np.zeros((3, 3, 3, 3)))


def test_the_pixel_size_route_gives_the_diameter_when_the_card_knows_the_cells_size_in_um(tiny_package,
                                                                                              monkeypatch):
    seg = Segmenter(tiny_package)
    image, _, _ = synthetic_nuclei()
    assert seg.segment(image, pixel_size=0.5, refine_diameter=False).diameter_source == "model"  # card: no µm size
    _replace_card(monkeypatch, seg, object_diameter_um=9.0)
    result = seg.segment(image, pixel_size=0.5, refine_diameter=False)
    assert result.diameter == 18.0 and result.diameter_source == "pixel size"
    assert seg.segment(image, diameter=30, pixel_size=0.5, refine_diameter=False).diameter == 30.0


def test_pixel_size_is_read_from_ome_and_imagej_metadata(tmp_path):
    import tifffile
    from cellpoint.runtime.image_io import read_pixel_size
    a = np.zeros((32, 32), np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", a, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "um"})
    tifffile.imwrite(tmp_path / "ome.tif", a, ome=True, metadata={"PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm"})
    tifffile.imwrite(tmp_path / "cm.tif", a, resolution=(10000, 10000), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "none.tif", a)
    assert read_pixel_size(tmp_path / "ij.tif") == pytest.approx(0.65)
    assert read_pixel_size(tmp_path / "ome.tif") == pytest.approx(0.325)
    assert read_pixel_size(tmp_path / "cm.tif") == pytest.approx(1.0)
    assert read_pixel_size(tmp_path / "none.tif") is None and read_pixel_size(tmp_path / "x.png") is None


def test_arguments_out_of_range_are_option_errors_naming_them():
    from cellpoint.runtime import Segmenter
    from cellpoint.runtime.errors import CellpointError, OptionError
    from cellpoint.runtime.limits import diameter_range, min_tile
    with pytest.raises(OptionError, match="tile 64 px is too small.*at least 128 px"):
        Segmenter("objectness-nuclei", tile=64)
    seg = Segmenter("objectness-nuclei")
    image = np.zeros((40, 40), np.uint8)
    lo, hi = diameter_range(seg.diameter)
    assert (lo, hi) == (3.0, 1536.0) and min_tile(64, 16) == 128
    for bad, match in [(0, "positive finite"), (float("inf"), "positive finite"), (float("nan"), "positive finite"),
                       (2.9, "outside 3–1536 px"), (1e9, "outside")]:
        with pytest.raises(OptionError, match=match):
            seg.segment(image, diameter=bad)
    with pytest.raises(OptionError, match="pixel size"):
        seg.segment(image, pixel_size=-1)
    with pytest.raises(OptionError, match="channels: index -1"):
        seg.segment(image, channels=[-1])
    with pytest.raises(CellpointError, match="too small to segment"):
        seg.segment(np.zeros((1, 5), np.uint8))
    assert seg.segment(image, diameter=lo).labels.shape == image.shape  # the range's ends are accepted
