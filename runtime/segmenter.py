"""Segmenter: numpy image in, label image and instance table out, with onnxruntime only.

Thread safety: one Segmenter may be shared by any number of threads; `segment` keeps no state between
calls (onnxruntime sessions are safe to run concurrently), so each call's result is what it would be
alone. `close` must not race with running calls."""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import msgspec
import numpy as np
import onnxruntime as ort

from cellpoint.runtime.blockwise import LARGE_PIXELS, segment_blockwise
from cellpoint.runtime.colour import to_model_channels
from cellpoint.runtime.decoding import DecodeContext, Params
from cellpoint.runtime.errors import CellpointError, ImageError
from cellpoint.runtime.limits import (MIN_SIDE, check_channels, check_diameter, check_network_size, check_pixel_size,
                                     check_tile)
from cellpoint.runtime.labels import instance_table, median_diameter, relabel_sequential, resize_labels
from cellpoint.runtime.normalize import channel_levels, normalize, to_channels_first
from cellpoint.runtime.outlines import refine_outlines_by_contrast
from cellpoint.runtime.package import ModelPackage, load_package
from cellpoint.runtime.providers import check_session_device, choose_precision, choose_providers, run_session
from cellpoint.runtime.scale import estimate_diameter
from cellpoint.runtime.tiling import predict_tiled

# The largest enlargement the diameter refinement may ask for: cells measured at under a quarter of the
# network's diameter are fragments of a wrong first pass (segmenting at their size only makes more).
MAX_REFINE_ZOOM = 4.0


def check_image(image: np.ndarray) -> None:
    """Raise ImageError naming the problem if `image` cannot be segmented."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ImageError(f"wrong dimensions: expected (H,W) or (H,W,C), got shape {image.shape}")
    if image.size == 0 or min(image.shape[:2]) < 1:
        raise ImageError(f"empty image (shape {image.shape})")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageError(f"image of {image.shape[1]}×{image.shape[0]} px is too small to segment (at least "
                         f"{MIN_SIDE}×{MIN_SIDE} px)")
    if image.dtype.kind not in "biuf":
        raise ImageError(f"unsupported dtype {image.dtype}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ImageError("image contains NaN or infinite values")


@dataclass(frozen=True)
class SegmentationResult:
    """One image's segmentation. Unpacks as `labels, table = result`.

    labels: uint32 (H,W), 0 = background, ids 1..N. table: dict of equal-length (N,) columns id, area (px),
    centroid_y, centroid_x, bbox_y0, bbox_x0, bbox_y1, bbox_x1 (half-open), score, plus any the decoder
    adds (in image px). diameter: the cell diameter (image px) of the pass whose result this is (the
    measured one when the diameter was refined). model: the package's name. diameter_source: where the
    first pass's diameter came from — "given", "pixel size" (the card's object size in µm and the image's
    pixel size), "estimated" (the package's scale graph) or "model" (the card's own) — plus ", refined"
    when the result is from the second pass at the measured size. conversion: what was done to the image to
    give the model what it takes (e.g. "rgb→luminance, inverted"; "" for nothing)."""
    labels: np.ndarray
    table: dict[str, np.ndarray]
    diameter: float
    model: str
    diameter_source: str = "given"
    conversion: str = ""

    def __iter__(self) -> Iterator:
        yield self.labels
        yield self.table


class Segmenter:
    """A loaded model package ready to segment images.

    Parameters
    ----------
    model : str or Path, optional
        A bundled package name (see `cellpoint models`) or a package folder; None = the default model.
    device : {"auto", "cpu", "cuda", "cuda:N", "tensorrt", "tensorrt:N"}
        "auto" uses CUDA when this onnxruntime build has it, else the CPU; "cuda:N" / "tensorrt:N" run on
        GPU N (`providers.choose_providers`) and fail with DeviceError rather than fall back to the CPU.
    tile : int
        Largest side (px, at the network's scale) run in one piece; larger images run in overlapping
        tiles, which bounds the network's memory. At least `limits.min_tile` of the card's tiling.
    threads : int, optional
        onnxruntime intra-op threads (None = all cores).
    precision : {"auto", "fp32", "int8", "fp16"}
        The precision of the main graph: "fp32", or a variant the package ships (its card's `variants`).
        "auto": "int8" on the CPU and "fp16" on a GPU when the package ships it, else "fp32". The one
        chosen is `precision`.

    Raises
    ------
    PackageError
        The package is missing, invalid or fails a checksum, or lacks the precision asked for.
    OptionError
        `tile` is too small for the package's tile overlap, or `precision` is none of the above.
    DeviceError
        device="cuda" and this onnxruntime has no CUDA provider.

    Use as a context manager, or call `close`, to release the onnxruntime sessions.
    """

    def __init__(self, model: str | Path | None = None, device: str = "auto", tile: int = 768,
                 threads: int | None = None, precision: str = "auto"):
        self.package: ModelPackage = load_package(model)
        tiling = self.package.card.tiling
        self.tile = check_tile(tile, tiling.overlap, tiling.multiple)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = choose_providers(device)
        #: the main graph's precision in use ("fp32", "int8" or "fp16"; see the `precision` argument)
        self.precision: str = choose_precision(precision, self.package.precisions, providers)
        if self.precision == "fp16" and device.startswith("tensorrt"):
            providers = choose_providers(device, fp16=True)
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            str(self.package.main_graph_path(self.precision)), options, providers=providers)
        check_session_device(self._session, device)
        roles = list(self.package.decoder.graphs)
        if self.package.card.scale is not None:
            roles.append(self.package.card.scale.graph)
        self._graphs = {role: ort.InferenceSession(str(self.package.graph_path(role)), options, providers=providers)
                        for role in roles}
        self._params: Params = self.package.params
        card = self.package.card
        self._input_name = card.inputs[0].name
        self._output_names = [o.name for o in card.outputs]
        self._strides = {o.name: o.stride for o in card.outputs}

    # ------------------------------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The package's name."""
        return self.package.name

    @property
    def provider(self) -> str:
        """The execution provider onnxruntime actually uses first (e.g. "CPUExecutionProvider")."""
        return self._open_session().get_providers()[0]

    @property
    def diameter(self) -> float:
        """The cell diameter (px) the network was trained to see."""
        return float(self.package.card.object_diameter_px)

    @property
    def refines_diameter(self) -> bool:
        """Whether `segment` re-runs each image at its measured cell size unless told otherwise (the
        package's card says so when that was measured to help on its val sets)."""
        return bool(self.package.card.refine_diameter)

    @property
    def decoder_params(self) -> Params:
        """The decoder's parameters (read-only; see `with_decoder_params`)."""
        return self._params

    def with_decoder_params(self, **changes) -> Segmenter:
        """A Segmenter that shares this one's loaded graphs but decodes with some parameters changed,
        e.g. `seg.with_decoder_params(score_threshold=0.4)`. Raises ValueError naming a parameter the
        decoder does not have or a value of the wrong type."""
        merged = {**msgspec.structs.asdict(self._params), **changes}
        try:
            params = msgspec.convert(merged, type(self._params))
        except msgspec.ValidationError as error:
            raise ValueError(f"decoder {self.package.decoder.name!r} parameters: {error}") from None
        other = copy.copy(self)
        other._params = params
        return other

    # ----------------------------------------------------------------------------------------- segment

    @property
    def estimates_diameter(self) -> bool:
        """Whether the package can estimate an image's cell diameter (it has a scale graph)."""
        return self.package.card.scale is not None

    def segment(self, image: np.ndarray, diameter: float | None = None, channels: Sequence[int] | None = None,
                refine_diameter: bool | None = None, pixel_size: float | None = None,
                on_tile: Callable[[int, int], None] | None = None) -> SegmentationResult:
        """Segment one image.

        Parameters
        ----------
        image : ndarray
            (H,W) or (H,W,C), any integer or float dtype.
        diameter : float, optional
            Typical cell diameter in this image (px); the image is rescaled so its cells have the model's
            diameter. None: from `pixel_size` when the card states its cells' size in µm, else estimated
            by the package's scale graph when it has one, else the model's own.
        channels : sequence of int, optional
            Channels of a (H,W,C) image to feed the model, in order.
        refine_diameter : bool, optional
            Measure the cells found at `diameter` and, if their median diameter differs by more than 10%
            (and is at least a quarter of the model's diameter), segment again at the measured size (twice
            the network time on those images). None = the package's default (`refines_diameter`).
        pixel_size : float, optional
            µm per pixel of this image (e.g. from its metadata); used when `diameter` is None.
        on_tile : callable, optional
            Called as on_tile(done, total) after each network tile of each pass (progress of large images).

        Returns
        -------
        SegmentationResult
            labels, table, the diameter used and the model's name; unpacks as (labels, table). An image of
            more than `blockwise.LARGE_PIXELS` (4096²) pixels is segmented block by block, in memory bounded
            by the block (labels uint32; the diameter estimated and refined on sample blocks).

        Raises
        ------
        ImageError
            The image cannot be segmented (shape, dtype, empty, NaN or infinite values).
        OptionError
            `diameter`, `pixel_size` or `channels` out of range (`cellpoint.runtime.limits`), or the
            diameter would rescale the image beyond `limits.MAX_NETWORK_PIXELS`.
        """
        if diameter is not None:
            diameter = check_diameter(diameter, self.diameter)
        if pixel_size is not None:
            pixel_size = check_pixel_size(pixel_size)
        if channels is not None:
            channels = check_channels(channels)
        if isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.shape[0] * image.shape[1] > LARGE_PIXELS:
            return self._segment_large(image, diameter, channels, refine_diameter, pixel_size, on_tile)
        if refine_diameter is None:
            refine_diameter = self.refines_diameter
        image, conversion = self._model_channels(image, channels)
        assumed, source = self._first_diameter(image, diameter, pixel_size)
        labels, table = self._segment_once(image, assumed, on_tile)
        used = assumed
        if refine_diameter:
            measured = median_diameter(table)
            plausible = measured is not None and measured >= self.diameter / MAX_REFINE_ZOOM
            if plausible and abs(np.log(measured / assumed)) > np.log(1.1):
                labels, table = self._segment_once(image, measured, on_tile)
                used, source = measured, source + ", refined"
        return SegmentationResult(labels, table, used, self.name, source, conversion)

    def _segment_large(self, image, diameter, channels, refine_diameter, pixel_size, on_tile) -> SegmentationResult:
        """`segment` of an image of more than LARGE_PIXELS pixels, block by block (`runtime.blockwise`):
        the network's maps and the decoder's work stay the size of a block. Labels are uint32."""
        check_image(image)
        labels = np.zeros(image.shape[:2], np.uint32)
        parts: list[dict[str, np.ndarray]] = []
        found = segment_blockwise(self, image, labels, diameter=diameter, pixel_size=pixel_size, channels=channels,
                                  refine_diameter=refine_diameter, on_block=on_tile, on_rows=parts.append)
        columns = list(parts[0]) if parts else list(instance_table(np.zeros((1, 1), np.int32)))
        table = {c: np.concatenate([p[c] for p in parts]) if parts else np.zeros(0) for c in columns}
        return SegmentationResult(labels, table, found.diameter, self.name, found.diameter_source, found.conversion)

    def segment_stream(self, frames, **options):
        """Segment an iterable of frames in order, reading the next while this one is segmented; yields
        `stream.FrameResult` (the result and per-frame timing, ms). See `cellpoint.runtime.stream`."""
        from cellpoint.runtime.stream import segment_stream
        return segment_stream(self, frames, **options)

    def estimate_diameter(self, image: np.ndarray, channels: Sequence[int] | None = None) -> float | None:
        """The typical cell diameter (image px) of `image` by the package's scale graph; None when the
        package has none or sees no cells."""
        scale = self.package.card.scale
        if scale is None:
            return None
        return self._estimate(self._normalised(self._model_channels(image, channels)[0])[0], scale)

    def close(self) -> None:
        """Release the onnxruntime sessions; later calls to `segment` raise CellpointError."""
        self._session = None
        self._graphs = {}

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- internals

    def _open_session(self) -> ort.InferenceSession:
        if self._session is None:
            raise CellpointError(f"{self.name}: this Segmenter was closed")
        return self._session

    def _model_channels(self, image: np.ndarray, channels: Sequence[int] | None) -> tuple[np.ndarray, str]:
        """The image checked, its `channels` picked and converted to what the model takes (colour to
        luminance, alpha dropped, inverted for the card's polarity); with a note of what was done."""
        check_image(image)
        if channels is not None:
            image = image[..., list(channels)] if image.ndim == 3 else image
        spec = self.package.card.inputs[0]
        return to_model_channels(image, spec.channels, spec.polarity)

    def _first_diameter(self, image, diameter, pixel_size) -> tuple[float, str]:
        """The diameter (image px) of the first pass and where it came from (see SegmentationResult).
        image: as `_model_channels` returns it."""
        if diameter:
            return float(diameter), "given"
        um = self.package.card.object_diameter_um
        if pixel_size and um:
            derived = float(um) / float(pixel_size)
            return check_diameter(derived, self.diameter, f"diameter from the pixel size ({pixel_size:g} µm/px; "
                                  f"cells of {um:g} µm)"), "pixel size"
        scale = self.package.card.scale
        if scale is not None:
            estimate = self._estimate(self._normalised(image)[0], scale)
            if estimate is not None:
                return float(estimate), "estimated"
        return self.diameter, "model"

    def _estimate(self, channel: np.ndarray, scale) -> float | None:
        """The scale graph's diameter estimate for a normalised (H,W) channel (see runtime.scale)."""
        session = self._graphs[scale.graph]

        def run(tiles):  # the scale graph's output channels: log2 ratio, presence logit
            self._open_session()
            out = session.run(None, {"image": tiles})[0]
            return out[:, 0], out[:, 1]
        return estimate_diameter(channel, run, scale)

    def segment_prepared(self, image: np.ndarray, diameter: float, levels: np.ndarray,
                         on_tile: Callable[[int, int], None] | None = None,
                         network_origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One pass over a block of a larger image (`cellpoint.runtime.blockwise`): `image` (H,W) or (H,W,C)
        already fitted to the model's channels and polarity (`fit_channels`), normalised with the whole
        image's `levels` (float (C,2), `normalize.channel_levels`), at `diameter` (image px), no refinement.
        network_origin: where the block starts in the whole image's network px (y, x); the network's tiles
        are laid on the whole image's grid (see `_predict`), so the block's maps are the whole image's.
        Returns (labels int32 (H,W), instance table)."""
        return self._segment_once(image, check_diameter(diameter, self.diameter), on_tile, levels, network_origin)

    def fit_channels(self, image: np.ndarray, channels: Sequence[int] | None = None) -> tuple[np.ndarray, str]:
        """An image checked, its `channels` picked, converted to the model's channel count and polarity
        (`colour.to_model_channels`): (array, note of what was done)."""
        return self._model_channels(image, channels)

    def _segment_once(self, image, diameter, on_tile=None, levels=None,
                      network_origin=(0, 0)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One pass at `diameter` over an image as `_model_channels` returns it: network, decoder (at its
        scale), outlines, table. on_tile: see `segment`; levels, network_origin: see `segment_prepared`."""
        decoder = self.package.decoder
        x, scale = self._network_input(image, diameter, levels)
        outputs = self._predict(x, on_tile, network_origin)
        shape = image.shape[:2]
        maps = self._maps_at_image_size(outputs, shape) if decoder.scale == "image" else outputs
        context = DecodeContext(maps, x, shape, scale, self.package.card.tiling.multiple, self._run_graph,
                                self.package.assets)
        labels, score, columns = decoder.decode(context, self._params)
        if decoder.scale == "network":
            labels = resize_labels(labels, shape)
            score = cv2.resize(score, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
            present = np.unique(labels[labels > 0]).astype(np.int64)
            labels = relabel_sequential(labels)
            columns = {k: np.asarray(v)[present - 1] for k, v in columns.items()}
        contrast = self.package.card.postprocess.outline_contrast
        if contrast is not None:
            labels = refine_outlines_by_contrast(self._intensity(image, levels), labels,
                                                 float(diameter) if diameter else self.diameter, contrast)
        table = instance_table(labels, score)
        table.update(columns)
        return labels, table

    def _normalised(self, image: np.ndarray, levels=None) -> np.ndarray:
        """An image as `_model_channels` returns it, normalised as the card says (with `levels` if given), at
        its own resolution: float32 (C,H,W)."""
        spec = self.package.card.inputs[0]
        return normalize(to_channels_first(image, spec.channels), spec.preprocessing, levels)

    def levels(self, image: np.ndarray) -> np.ndarray:
        """The normalisation levels (float (C,2)) of an image as `fit_channels` returns it (or of a thumbnail
        of one), for `segment_prepared` on its blocks."""
        spec = self.package.card.inputs[0]
        return channel_levels(to_channels_first(image, spec.channels), spec.preprocessing)

    def _network_input(self, image: np.ndarray, diameter: float | None = None, levels=None) -> tuple[np.ndarray, float]:
        """The image (as `_model_channels` returns it) as the network sees it: float32 (C,h,w), normalised
        and rescaled so its cells have the model's diameter; with the scale (network px per image px)."""
        h, w = image.shape[:2]
        scale = self.diameter / float(diameter) if diameter else 1.0
        check_network_size(h, w, scale, float(diameter or self.diameter))
        x = self._normalised(image, levels)
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            x = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
                          for c in x])
        return x, scale

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = run_session(self._open_session(), self._input_name, batch, self._output_names)
        return dict(zip(self._output_names, outputs))

    def _predict(self, x: np.ndarray, on_tile=None, origin=(0, 0)) -> dict[str, np.ndarray]:
        """The main graph over a (C,h,w) network input, tiled: {name: float32 (k,h,w) or its grid}.

        origin: (y, x) network px of x's first pixel in a larger image. A network that pools is not
        shift-invariant: the same pixels give other outputs when a tile starts elsewhere than on a multiple
        of the card's `multiple`. So x is reflect-padded at the top and left until it starts on such a
        multiple of the larger image, and the padding's outputs are dropped (origins must be multiples of
        the outputs' strides)."""
        tiling = self.package.card.tiling
        pad_y, pad_x = (int(o) % tiling.multiple for o in origin)
        if pad_y or pad_x:
            x = np.pad(x, ((0, 0), (pad_y, 0), (pad_x, 0)), mode="reflect")
        outputs = predict_tiled(self._run, x, tile=self.tile, overlap=tiling.overlap, multiple=tiling.multiple,
                                on_tile=on_tile)
        if pad_y or pad_x:
            outputs = {name: arr[:, pad_y // self._strides.get(name, 1):, pad_x // self._strides.get(name, 1):]
                       for name, arr in outputs.items()}
        return outputs

    def _predict_maps(self, image: np.ndarray, diameter: float | None = None) -> tuple[dict[str, np.ndarray], float]:
        """Network output maps at the image's own resolution (see `_maps_at_image_size`) and the pixel
        scale (image px per network px)."""
        x, scale = self._network_input(self._model_channels(image, None)[0], diameter)
        return self._maps_at_image_size(self._predict(x), image.shape[:2]), 1.0 / scale

    def _run_graph(self, role: str, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The package's further graph `role` on named inputs → its first output."""
        self._open_session()
        return self._graphs[role].run(None, dict(inputs))[0]

    def _maps_at_image_size(self, outputs: dict[str, np.ndarray], shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """Stitched network outputs {name: (k,h',w')} → decoder maps: a dense output's first channel resized
        to `shape` (H,W); a grid output (card stride > 1) unchanged."""
        out = {}
        for name, arr in outputs.items():
            if self._strides.get(name, 1) > 1:
                out[name] = arr
                continue
            arr = arr[0]
            if arr.shape != shape:
                arr = cv2.resize(arr, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
            out[name] = arr
        return out

    def _intensity(self, image: np.ndarray, levels=None) -> np.ndarray:
        """The model's first input channel at the image's resolution (the image as `_model_channels`
        returns it), normalised as the network sees it: float32 (H,W)."""
        spec = self.package.card.inputs[0]
        x = to_channels_first(image, spec.channels)[:1]
        return normalize(x, spec.preprocessing, None if levels is None else np.asarray(levels)[:1])[0]
