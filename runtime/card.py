"""The model card (`card.json`): typed, versioned, validated once when a package is loaded.

`Card` is the whole contract between a package and the runtime (docs/model-package.md explains each
field); `parse_card` builds it from the JSON, migrating older formats first; `card_schema` generates the
JSON Schema kept in `runtime/card.schema.json` from these same definitions. Decoder parameters are
checked against their decoder's declaration by the package loader (`cellpoint.runtime.package`).

Version policy: `format` is "cellpoint-card/N". N grows when a field is removed or renamed or its meaning
changes; adding an optional field whose default keeps the old behaviour does not bump it. The runtime
reads every earlier N (migrating it in memory) and refuses a newer one.
"""
from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

import msgspec

from cellpoint.runtime.scale import ScaleParams

CARD_FORMAT = "cellpoint-card/2"
CARD_FORMAT_V1 = "cellpoint-card/1"
READABLE_FORMATS = (CARD_FORMAT_V1, CARD_FORMAT)

Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$", description="hex sha256 of the file's bytes")]
RelativePath = Annotated[str, msgspec.Meta(min_length=1, description="a file inside the package folder, "
                                                                     "relative, no '..'")]


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Card parts: immutable, unknown fields rejected."""


class Percentile(_Struct, kw_only=True, tag_field="kind", tag="percentile"):
    """How the runtime normalises the image before the network: per channel, the `low` and `high`
    percentiles map to 0 and 1 (values beyond are kept)."""
    low: float = 1.0
    high: float = 99.8

    @property
    def kind(self) -> str:
        return "percentile"


class RobustPercentile(_Struct, kw_only=True, tag_field="kind", tag="percentile_robust"):
    """As "percentile", with the percentiles taken after a 3×3 median filter and without saturated pixels
    (hot pixels and saturated areas do not pull them), and the result clipped to `clip`."""
    low: float = 1.0
    high: float = 99.8
    clip: tuple[float, float] = (-0.5, 1.5)

    @property
    def kind(self) -> str:
        return "percentile_robust"


Preprocessing = Percentile | RobustPercentile


class InputSpec(_Struct, kw_only=True):
    """The main graph's one input: float32 (batch, channels, y, x). polarity: "bright" when the network
    was trained on objects brighter than their background (fluorescence) — the runtime then inverts an
    image whose background is bright (brightfield, H&E); "dark" the reverse; "any": never inverted."""
    name: str
    axes: Literal["bcyx"] = "bcyx"
    channels: Annotated[int, msgspec.Meta(ge=1)]
    dtype: Literal["float32"] = "float32"
    preprocessing: Preprocessing
    polarity: Literal["any", "bright", "dark"] = "any"


class OutputSpec(_Struct, kw_only=True):
    """One output of the main graph: (batch, k, y/stride, x/stride). stride 1 = a dense map."""
    name: str
    axes: Literal["bcyx"] = "bcyx"
    stride: Annotated[int, msgspec.Meta(ge=1)] = 1
    description: str = ""


class Weights(_Struct, kw_only=True):
    """The main ONNX graph. parity_max_rel_diff: largest |onnxruntime − torch| / max(1, |torch|) measured
    at export."""
    source: RelativePath
    sha256: Sha256
    format: Literal["onnx"] = "onnx"
    opset: int
    parity_max_rel_diff: float | None = None


class GraphFile(_Struct, kw_only=True):
    """A further ONNX graph a decoder runs (by role). parity_max_rel_diff: largest |onnxruntime − torch|
    relative to the largest torch value, measured at export."""
    source: RelativePath
    sha256: Sha256
    parity_max_rel_diff: float | None = None


class AssetFile(_Struct, kw_only=True):
    """A further JSON file a decoder reads (by role), e.g. canonical-shape's MLP weights."""
    source: RelativePath
    sha256: Sha256


Precision = Literal["int8", "fp16"]


class Variant(_Struct, kw_only=True):
    """A lower-precision copy of the main graph (same inputs and outputs, float32 at its edges): "int8"
    (static quantisation, QDQ, per-channel weights, for CPUs) or "fp16" (for GPUs). conversion: how it was
    made (tool, settings, calibration data); parity_max_rel_diff: largest |variant − fp32| / max(1, |fp32|)
    of the outputs on tiles held out from calibration; metrics: its val figures, measured with the same
    code and keys as the card's `metrics` (the fp32 graph's); f1_50_loss: the largest fp32 − variant F1@0.5
    over those entries (null: not measured)."""
    source: RelativePath
    sha256: Sha256
    conversion: dict[str, Any] = {}
    parity_max_rel_diff: float | None = None
    metrics: dict[str, dict[str, Any]] = {}
    f1_50_loss: float | None = None


class Tiling(_Struct, kw_only=True):
    """multiple: network input sides must be multiples of this (px). overlap: px shared by neighbouring
    tiles of a large image."""
    multiple: Annotated[int, msgspec.Meta(ge=1)]
    overlap: Annotated[int, msgspec.Meta(ge=0)]


class DecoderEntry(_Struct, kw_only=True):
    """Which registered decoder turns the outputs into instances, and its parameters (distances and areas
    in network px); the parameters are checked against the decoder's own declaration."""
    name: str
    params: dict[str, Any] = {}


class Postprocess(_Struct, kw_only=True):
    """Steps after any decoder. outline_contrast: re-draw each outline at this level between the cell's
    brightness (1) and its surroundings' (0) (fluorescence); None: off."""
    outline_contrast: float | None = None


class Sample(_Struct, kw_only=True):
    """A bundled sample image and the labels the package produces for it."""
    input: RelativePath
    output: RelativePath
    source: str = ""
    licence: str = ""
    instances: Annotated[int, msgspec.Meta(ge=0)]


class Figure(_Struct, kw_only=True):
    """An image shown in the human-readable card."""
    file: RelativePath
    caption: str = ""


class Domain(_Struct, kw_only=True):
    """The images a package was trained on, for a user to judge whether theirs are alike."""
    image_kinds: list[str]
    cell_diameter_px: tuple[float, float]
    note: str = ""


class Card(_Struct, kw_only=True):
    """card.json, format cellpoint-card/2. Units: px (pixels of the network input unless said), µm."""
    format: Literal["cellpoint-card/2"]
    name: Annotated[str, msgspec.Meta(min_length=1)]
    description: str = ""
    created: str = ""
    method: str
    method_reference: str = ""
    label_kind: str
    license: str = ""
    weights: Weights
    inputs: Annotated[list[InputSpec], msgspec.Meta(min_length=1, max_length=1)]
    outputs: Annotated[list[OutputSpec], msgspec.Meta(min_length=1)]
    object_diameter_px: Annotated[float, msgspec.Meta(gt=0, description="the cell diameter (px) the network "
                                                                          "was trained to see")]
    refine_diameter: bool = False
    pixel_size_um: Annotated[float, msgspec.Meta(gt=0)] | None = None
    object_diameter_um: Annotated[float, msgspec.Meta(gt=0)] | None = None
    scale: ScaleParams | None = None
    tiling: Tiling
    decoder: DecoderEntry
    postprocess: Postprocess = Postprocess()
    graphs: dict[str, GraphFile] = {}
    assets: dict[str, AssetFile] = {}
    architecture: dict[str, Any] = {}
    training: dict[str, Any] = {}
    training_data: list[dict[str, Any]] = []
    domain: Domain | None = None
    samples: list[Sample] = []
    metrics: dict[str, dict[str, Any]] = {}
    figures: list[Figure] = []
    variants: dict[Precision, Variant] = {}


class CardError(ValueError):
    """A card that cannot be parsed; the message names the field."""


# keys /1 cards carried in their decoder entry that no decoder reads (architecture facts, or how to decode,
# which the decoder now declares itself)
_V1_UNREAD_DECODER_KEYS = ("decode_at", "size_ranges", "feature_stride", "roi_size", "mask_size",
                           "instances_per_cell")


def split_v1_decoder(flat: dict) -> tuple[dict, dict, dict]:
    """A /1 decoder entry (parameters flat beside "name") → ({name, params}, postprocess, inline assets):
    outline_contrast moves to postprocess, canonical-shape's MLP weights to an asset, keys no decoder
    reads are dropped."""
    params = {k: v for k, v in flat.items() if k != "name" and k not in _V1_UNREAD_DECODER_KEYS}
    postprocess = {"outline_contrast": params.pop("outline_contrast")} if "outline_contrast" in params else {}
    inline = {"shape_mlp": params.pop("shape_mlp")} if "shape_mlp" in params else {}
    return {"name": flat.get("name"), "params": params}, postprocess, inline


def migrate_v1(raw: dict) -> tuple[dict, dict[str, Any]]:
    """A cellpoint-card/1 dict → (the /2 dict, assets carried inline by the /1 card {role: content}).

    /1 → /2: the decoder's parameters move under decoder.params (outline_contrast to postprocess, the
    canonical-shape MLP weights to an inline asset); graphs' "file" becomes "source";
    weights.parity_max_abs_diff becomes parity_max_rel_diff (it always held the relative figure)."""
    card = dict(raw)
    card["format"] = CARD_FORMAT
    weights = dict(card.get("weights") or {})
    if "parity_max_abs_diff" in weights:
        weights["parity_max_rel_diff"] = weights.pop("parity_max_abs_diff")
    card["weights"] = weights
    card["graphs"] = {role: {("source" if k == "file" else k): v for k, v in entry.items()}
                      for role, entry in (card.get("graphs") or {}).items()}
    inline = {}
    if isinstance(card.get("decoder"), dict):
        card["decoder"], postprocess, inline = split_v1_decoder(card["decoder"])
        if postprocess:
            card["postprocess"] = postprocess
    return card, inline


def parse_card(raw: Any) -> tuple[Card, dict[str, Any]]:
    """A card.json document (already JSON-decoded) → (Card, inline assets of a migrated /1 card).

    Raises CardError naming the field for a card of an unknown format, a missing or ill-typed field or an
    unknown one."""
    if not isinstance(raw, dict):
        raise CardError(f"expected a JSON object, got {type(raw).__name__}")
    if "format" not in raw:
        raise CardError("Object missing required field `format`")
    found = raw.get("format")
    if found not in READABLE_FORMATS:
        raise CardError(f"format: unknown card format {found!r}; this cellpoint reads {', '.join(READABLE_FORMATS)}"
                        " (a newer format needs a newer cellpoint)")
    inline: dict[str, Any] = {}
    if found == CARD_FORMAT_V1:
        raw, inline = migrate_v1(raw)
    try:
        return msgspec.convert(raw, Card), inline
    except msgspec.ValidationError as error:
        raise CardError(_field_message(error)) from None


def _field_message(error: msgspec.ValidationError) -> str:
    """msgspec's "<problem> - at `$.a.b`" → "a.b: <problem>" (the field first, as a reader looks for it)."""
    text = str(error)
    problem, sep, where = text.rpartition(" - at `")
    if not sep:
        return text
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    return f"{path}: {problem}" if path else problem


def validate_params(params: dict, params_type: type) -> Any:
    """A decoder's parameter dict → its typed `params_type`; CardError naming the parameter otherwise."""
    try:
        return msgspec.convert(params, params_type)
    except msgspec.ValidationError as error:
        message = _field_message(error)
        raise CardError(f"decoder.params.{message}" if " - at " in str(error) else f"decoder.params: {message}") from None


def card_schema(decoders: dict) -> dict:
    """The JSON Schema of card.json (format cellpoint-card/2), with decoder.params given per decoder
    (`decoders`: {name: Decoder}). runtime/card.schema.json holds it for the built-in decoders
    (`cellpoint.export.card.write_card_schema` writes it)."""
    names = sorted(decoders)
    (card,), components = msgspec.json.schema_components([Card], ref_template="#/$defs/{name}")
    _, param_defs = msgspec.json.schema_components([decoders[n].params for n in names],
                                                   ref_template="#/$defs/{name}")
    components.update(param_defs)
    components["DecoderEntry"] = {
        "title": "DecoderEntry", "description": inspect.cleandoc(DecoderEntry.__doc__),
        "oneOf": [{"type": "object", "additionalProperties": False, "required": ["name"],
                   "properties": {"name": {"const": n},
                                  "params": {"$ref": f"#/$defs/{decoders[n].params.__name__}"}}}
                  for n in names]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://github.com/cellpoint/cellpoint/runtime/card.schema.json",
            "title": "cellpoint model card (card.json)", **card, "$defs": components}
