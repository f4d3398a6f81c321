"""COCO RLE encoding and label-image -> COCO results, checked against pycocotools."""
import numpy as np
import pycocotools.mask as mask_utils
import pytest

from cellpoint.runtime.coco_results import decode_rle_counts, encode_rle, labels_to_coco_results


def _reference(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _masks():
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (1, 9), (9, 1), (13, 17), (64, 65), (129, 31)]:
        yield rng.random(shape) < 0.5                      # many short runs
        yield rng.random(shape) < 0.03                     # long 0-runs, large deltas
        yield np.zeros(shape, dtype=bool)                  # empty
        yield np.ones(shape, dtype=bool)                   # full
        frame = np.zeros(shape, dtype=bool)                # touches every edge, first and last pixel set
        frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
        yield frame
        corner = np.zeros(shape, dtype=bool)
        corner[-1, -1] = True                              # only the last pixel
        yield corner


@pytest.mark.parametrize("mask", list(_masks()), ids=lambda m: f"{m.shape}-{int(m.sum())}")
def test_encode_rle_matches_pycocotools(mask):
    ours = encode_rle(mask)
    ref = _reference(mask)
    assert ours["size"] == [int(s) for s in ref["size"]]
    assert isinstance(ours["counts"], str)
    assert ours["counts"] == ref["counts"].decode("ascii")


def test_encode_rle_large_runs_and_non_bool_input():
    mask = np.zeros((700, 900), dtype=np.uint8)
    mask[5:690, 3:880] = 7  # runs far beyond one 5-bit group; nonzero counts as foreground
    mask[300:310, 100:800] = 0
    assert encode_rle(mask)["counts"] == _reference(mask > 0)["counts"].decode()


def test_decode_rle_counts_inverts_encoding():
    rng = np.random.default_rng(3)
    mask = rng.random((37, 23)) < 0.2
    counts = decode_rle_counts(encode_rle(mask)["counts"])
    flat = mask.ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    expected = np.diff(np.r_[0, change, flat.size])
    if flat[0]:
        expected = np.r_[0, expected]
    np.testing.assert_array_equal(counts, expected)


def test_encode_rle_rejects_non_2d():
    with pytest.raises(ValueError):
        encode_rle(np.zeros((2, 3, 4), dtype=bool))


def test_labels_to_coco_results_round_trip():
    rng = np.random.default_rng(11)
    labels = np.zeros((45, 38), dtype=np.int32)
    ids = [3, 17, 1000, 42]
    for k in ids:
        y, x = rng.integers(0, 40, 2)
        labels[y:y + rng.integers(2, 9), x:x + rng.integers(2, 9)] = k
    labels[0, 0] = labels[44, 37] = 17          # 17 is split into several pieces, touching two corners
    labels[20:23, 0] = 42                       # 42 touches the left edge too
    present = sorted(int(i) for i in np.unique(labels) if i > 0)
    results = labels_to_coco_results(labels, image_id=9, scores={17: 0.25}, category_id=2)

    assert [r["score"] for r in results] == [0.25 if i == 17 else 1.0 for i in present]
    for instance_id, result in zip(present, results):
        expected = labels == instance_id
        rle = result["segmentation"]
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), expected)
        assert rle["counts"] == _reference(expected)["counts"].decode()
        assert result["bbox"] == mask_utils.toBbox(rle).tolist()
        assert result["area"] == int(expected.sum())
        assert (result["image_id"], result["category_id"]) == (9, 2)


def test_labels_to_coco_results_empty_and_negative_background():
    assert labels_to_coco_results(np.zeros((8, 8), dtype=np.uint16), 1) == []
    labels = np.full((6, 5), -1, dtype=np.int64)
    labels[2:4, 1:3] = 5
    (only,) = labels_to_coco_results(labels, 1)
    assert only["bbox"] == [1.0, 2.0, 2.0, 2.0] and only["area"] == 4


def test_labels_to_coco_results_many_instances():
    """A dense 512x512 grid of 1024 cells encodes exactly (spot-checked) and in one vectorised pass."""
    labels = np.zeros((512, 512), dtype=np.uint32)
    for k, (y, x) in enumerate(np.ndindex(32, 32)):
        labels[16 * y + 1:16 * y + 14, 16 * x + 2:16 * x + 15] = k + 1
    results = labels_to_coco_results(labels, 1)
    assert len(results) == 1024
    for k in (0, 511, 1023):
        assert results[k]["segmentation"]["counts"] == _reference(labels == k + 1)["counts"].decode()
    assert {r["area"] for r in results} == {13 * 13}
