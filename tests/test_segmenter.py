"""The runtime's Python API: numpy in, numpy out; tiling; diameter rescaling; devices."""
import numpy as np
import pytest

from cellpoint.runtime import Segmenter
from conftest import synthetic_nuclei


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
    whole, _ = Segmenter(tiny_package, tile=1024).predict_maps(image)
    tiled, _ = Segmenter(tiny_package, tile=160).predict_maps(image)
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
    from cellpoint.runtime.segmenter import median_diameter
    area = np.full(7, np.pi * 10 ** 2)
    assert median_diameter({"area": area}) == pytest.approx(20.0)
    assert median_diameter({"area": area[:3]}) is None        # too few cells to measure


def test_refine_diameter_segments_again_at_the_measured_size(tiny_package, monkeypatch):
    seg = Segmenter(tiny_package)
    calls = []
    one_cell = np.zeros((60, 60), np.uint32)
    for k in range(6):                                         # six 10x10 squares: diameter 2*sqrt(100/pi)
        one_cell[k * 10:k * 10 + 10, :10] = k + 1

    def fake_once(image, diameter, channels):
        calls.append(diameter)
        from cellpoint.runtime.postprocess import instance_table
        return one_cell, instance_table(one_cell)
    monkeypatch.setattr(seg, "_segment_once", fake_once)
    seg.segment(np.zeros((60, 60), np.float32), diameter=30, refine_diameter=True)
    assert calls[0] == 30 and calls[1] == pytest.approx(2 * np.sqrt(100 / np.pi))
    calls.clear()
    seg.segment(np.zeros((60, 60), np.float32), diameter=11.3, refine_diameter=True)
    assert calls == [11.3]                                     # within 10%: no second pass


def test_refine_diameter_defaults_to_the_package_card(tiny_package, monkeypatch):
    seg = Segmenter(tiny_package)
    calls = []
    cells = np.zeros((60, 60), np.uint32)
    for k in range(6):
        cells[k * 10:k * 10 + 10, :10] = k + 1

    def fake_once(image, diameter, channels):
        calls.append(diameter)
        from cellpoint.runtime.postprocess import instance_table
        return cells, instance_table(cells)
    monkeypatch.setattr(seg, "_segment_once", fake_once)
    image = np.zeros((60, 60), np.float32)
    assert not seg.refines_diameter                            # cards without the key: fixed diameter
    seg.segment(image, diameter=30)
    assert len(calls) == 1
    monkeypatch.setitem(seg.package.card, "refine_diameter", True)
    calls.clear()
    seg.segment(image, diameter=30)
    assert len(calls) == 2                                     # the card's default: a second pass
    calls.clear()
    seg.segment(image, diameter=30, refine_diameter=False)     # the caller overrides the card
    assert len(calls) == 1


def test_outline_contrast_in_the_decoder_entry_refines_the_outlines(tiny_package, monkeypatch):
    import cellpoint.runtime.segmenter as segmenter_module
    seg = Segmenter(tiny_package)
    image, truth, _ = synthetic_nuclei()
    seg.decoder = lambda maps, params, scale, image_shape: (truth, np.ones(truth.shape, np.float32), {})
    plain, _ = seg.segment(image, diameter=18, refine_diameter=False)
    calls = []

    def spy(intensity, labels, diameter_px, contrast):
        calls.append((intensity.shape, intensity.dtype, diameter_px, contrast))
        return np.where(labels > 0, 1, 0).astype(labels.dtype)          # one instance: visibly used
    monkeypatch.setattr(segmenter_module, "refine_outlines_by_contrast", spy)
    seg.decoder_params = dict(seg.decoder_params, outline_contrast=0.3)
    labels, table = seg.segment(image, diameter=18, refine_diameter=False)
    assert calls == [(image.shape, np.float32, 18.0, 0.3)]
    assert plain.max() > 1 and labels.max() == 1 and list(table["id"]) == [1]
