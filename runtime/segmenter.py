"""Segmenter: numpy image in, label image and instance table out, with onnxruntime only."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import onnxruntime as ort

from cellpoint.runtime.decoders import DECODERS
from cellpoint.runtime.normalize import normalize_percentile, to_channels_first
from cellpoint.runtime.outlines import refine_outlines_by_contrast
from cellpoint.runtime.package import ModelPackage, load_package
from cellpoint.runtime.detection_response import data_image, resize_labels, windowed_contributions
from cellpoint.runtime.postprocess import instance_table, relabel_sequential
from cellpoint.runtime.providers import choose_providers
from cellpoint.runtime.tiling import predict_tiled


def check_image(image: np.ndarray) -> None:
    """Raise ValueError naming the problem if `image` cannot be segmented."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ValueError(f"wrong dimensions: expected (H,W) or (H,W,C), got shape {image.shape}")
    if image.size == 0 or min(image.shape[:2]) < 1:
        raise ValueError(f"empty image (shape {image.shape})")
    if image.dtype.kind not in "biuf":
        raise ValueError(f"unsupported dtype {image.dtype}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")


class Segmenter:
    """A loaded model package ready to segment images.

    model: bundled name (see `cellpoint models`) or package folder; device: "auto" | "cpu" | "cuda";
    tile: largest side (px, at the network's scale) run in one piece — larger images are tiled with
    overlap, bounding memory; threads: onnxruntime intra-op threads (None = all cores)."""

    def __init__(self, model: str | Path | None = None, device: str = "auto", tile: int = 768,
                 threads: int | None = None):
        self.package: ModelPackage = load_package(model)
        card = self.package.card
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._options, self._providers = options, choose_providers(device)
        self.session = ort.InferenceSession(str(self.package.onnx_path), options, providers=self._providers)
        self._graphs: dict[str, ort.InferenceSession] = {}
        self.tile = int(tile)
        self.input_spec = card["inputs"][0]
        self.output_names = [o["name"] for o in card["outputs"]]
        self.decoder = DECODERS[card["decoder"]["name"]]
        self.decoder_params = card["decoder"]

    @property
    def provider(self) -> str:
        """The execution provider onnxruntime actually uses first (e.g. "CPUExecutionProvider")."""
        return self.session.get_providers()[0]

    @property
    def diameter(self) -> float:
        """The cell diameter (px) the network was trained to see."""
        return float(self.package.card["object_diameter_px"])

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_spec["name"]: batch})
        return dict(zip(self.output_names, outputs))

    @property
    def refines_diameter(self) -> bool:
        """Whether `segment` re-runs each image at its measured cell size unless told otherwise (the
        package's card says so when that was measured to help on its val sets)."""
        return bool(self.package.card.get("refine_diameter", False))

    def predict_maps(self, image: np.ndarray, diameter: float | None = None,
                     channels: Sequence[int] | None = None) -> tuple[dict[str, np.ndarray], float]:
        """Network output maps at the image's own resolution.

        image: (H,W) or (H,W,C), any numeric dtype. diameter: typical cell diameter in this image (px);
        None means the model's own. Returns ({name: array}, pixel_scale = image px per network px): a
        dense output (card stride 1) as float32 (H,W) at the image's resolution, a grid output (card
        stride > 1, e.g. a detector's cells) as float32 (k,h,w) at the network's scale."""
        x, scale = self.network_input(image, diameter, channels)
        return self.maps_at_image_size(self._predict(x), image.shape[:2]), 1.0 / scale

    def network_input(self, image: np.ndarray, diameter: float | None = None,
                      channels: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
        """The image as the network sees it: float32 (C,h,w), normalised and rescaled so its cells have
        the model's diameter; returns it with the scale (network px per image px)."""
        check_image(image)
        if channels is not None:
            image = image[..., list(channels)] if image.ndim == 3 else image
        x = to_channels_first(image, int(self.input_spec["channels"]))
        pre = self.input_spec["preprocessing"]
        x = normalize_percentile(x, pre["low"], pre["high"])
        h, w = x.shape[1:]
        scale = self.diameter / float(diameter) if diameter else 1.0
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            x = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
                          for c in x])
        return x, scale

    def _predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The main graph over a (C,h,w) network input, tiled: {name: float32 (k,h,w) or its grid}."""
        return predict_tiled(self._run, x, tile=self.tile, overlap=int(self.package.card["tiling"]["overlap"]),
                             multiple=int(self.package.card["tiling"]["multiple"]))

    def _graph(self, role: str) -> ort.InferenceSession:
        """The package's further graph for `role` (card "graphs"), loaded on first use."""
        if role not in self._graphs:
            path = self.package.path / self.package.card["graphs"][role]["file"]
            self._graphs[role] = ort.InferenceSession(str(path), self._options, providers=self._providers)
        return self._graphs[role]

    def maps_at_image_size(self, outputs: dict[str, np.ndarray], shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """Stitched network outputs {name: (k,h',w')} → decoder maps: a dense output's first channel resized
        to `shape` (H,W); a grid output (card stride > 1) unchanged."""
        strides = {o["name"]: int(o.get("stride", 1)) for o in self.package.card["outputs"]}
        out = {}
        for name, arr in outputs.items():
            if strides.get(name, 1) > 1:
                out[name] = arr
                continue
            arr = arr[0]
            if arr.shape != shape:
                arr = cv2.resize(arr, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
            out[name] = arr
        return out

    def segment(self, image: np.ndarray, diameter: float | None = None,
                channels: Sequence[int] | None = None,
                refine_diameter: bool | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Segment one image → (labels uint32 (H,W), table: dict of equal-length columns id, area,
        centroid_y, centroid_x, bbox_y0, bbox_x0, bbox_y1, bbox_x1, score, plus any the model's decoder
        adds — canonical-shape models add center_x, center_y, axis_major, axis_minor (px),
        orientation_deg and presence).

        diameter: typical cell diameter in this image (px); None = the model's own. refine_diameter:
        measure the cells found at `diameter` and, if their median diameter differs by more than 10%,
        segment again at the measured size (twice the network time on those images); None = the
        package's default (`refines_diameter`)."""
        if refine_diameter is None:
            refine_diameter = self.refines_diameter
        labels, table = self._segment_once(image, diameter, channels)
        if refine_diameter:
            measured = median_diameter(table)
            assumed = float(diameter) if diameter else self.diameter
            if measured is not None and abs(np.log(measured / assumed)) > np.log(1.1):
                labels, table = self._segment_once(image, measured, channels)
        return labels, table

    def _segment_once(self, image, diameter, channels):
        if self.decoder_params.get("decode_at") == "network":
            return self._segment_at_network_scale(image, diameter, channels)
        maps, pixel_scale = self.predict_maps(image, diameter, channels)
        labels, score_map, columns = self.decoder(maps, self.decoder_params, pixel_scale,
                                                  image_shape=image.shape[:2])
        contrast = self.decoder_params.get("outline_contrast")
        if contrast is not None:
            labels = refine_outlines_by_contrast(self.intensity(image, channels), labels,
                                                 float(diameter) if diameter else self.diameter, contrast)
        table = instance_table(labels, score_map)
        table.update(columns)
        return labels, table


    def intensity(self, image: np.ndarray, channels: Sequence[int] | None = None) -> np.ndarray:
        """The model's first input channel at the image's resolution, normalised as the network sees it:
        float32 (H,W)."""
        if channels is not None and image.ndim == 3:
            image = image[..., list(channels)]
        x = to_channels_first(image, int(self.input_spec["channels"]))[:1]
        pre = self.input_spec["preprocessing"]
        return normalize_percentile(x, pre["low"], pre["high"])[0]

    def _segment_at_network_scale(self, image, diameter, channels):
        """Decoders that need the network input or a further graph (WSISPDR: guided backpropagation;
        LACSS: the per-location instance graph; Point2Mask: the mask graph over boxes) decode at the network's scale; the labels are then
        resized to the image (nearest) and location columns converted to image px."""
        x, scale = self.network_input(image, diameter, channels)
        outputs = self._predict(x)
        params = self.decoder_params
        if params["name"] == "location_masks":
            session = self._graph("instances")

            def run_instances(windows, encoding):
                return session.run(["masks"], {"windows": windows, "encoding": encoding})[0]
            labels, score, columns = self.decoder(
                {"score": outputs["score"][0], "offsets": outputs["offsets"], "features": outputs["features"]},
                params, run_instances)
            columns = {k: v / scale if k in ("location_y", "location_x") else v for k, v in columns.items()}
        elif params["name"] == "box_masks":
            session = self._graph("masks")

            def run_masks(features, boxes):
                return session.run(["masks"], {"features": features, "boxes": boxes})[0]
            labels, score, columns = self.decoder(outputs, params, run_masks, x.shape[1:])
        else:
            session = self._graph("contributions")

            def contributions(regions, seed_values):
                return windowed_contributions(
                    lambda img, seeds: session.run(["contributions"], {"image": img, "regions": seeds})[0],
                    x, regions, seed_values, int(params["window"]), int(params["batch"]),
                    int(self.package.card["tiling"]["multiple"]))
            labels, score, columns = self.decoder({"likelihood": outputs["likelihood"][0]}, params, contributions,
                                                  data_image(x[0], params.get("data_term", "intensity")))
        labels = resize_labels(labels, image.shape[:2])
        score = cv2.resize(score, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        present = np.unique(labels[labels > 0]).astype(np.int64)
        labels = relabel_sequential(labels)
        table = instance_table(labels, score)
        table.update({k: np.asarray(v)[present - 1] for k, v in columns.items()})
        return labels, table


def median_diameter(table: dict[str, np.ndarray], min_cells: int = 5) -> float | None:
    """Median equivalent-circle diameter (px) of the instances in a table; None below `min_cells`."""
    area = table["area"]
    return float(2 * np.sqrt(np.median(area) / np.pi)) if len(area) >= min_cells else None
