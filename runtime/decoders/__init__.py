"""The registry of decoders: network outputs → instances. A card names one; `Segmenter` runs it.

A new decoder is one module (a `Params` type, a decode function, a `Decoder` named `DECODER`) and one line
in `BUILT_IN`; `register` adds one from outside the package (e.g. a plug-in or a test)."""
from __future__ import annotations

from cellpoint.runtime.decoders import (box_masks, canonical_shape, detection_response, location_masks,
                                        maps_and_seeds)
from cellpoint.runtime.decoding import Decoder

BUILT_IN = (maps_and_seeds.DECODER, canonical_shape.DECODER, detection_response.DECODER,
             location_masks.DECODER, box_masks.DECODER)

DECODERS: dict[str, Decoder] = {decoder.name: decoder for decoder in BUILT_IN}


def register(decoder: Decoder) -> Decoder:
    """Add a decoder to the registry (replacing one of the same name). Returns it."""
    DECODERS[decoder.name] = decoder
    return decoder


def get_decoder(name: str) -> Decoder:
    """The registered decoder called `name`; KeyError naming the known ones otherwise."""
    try:
        return DECODERS[name]
    except KeyError:
        raise KeyError(f"unknown decoder {name!r} (known: {', '.join(sorted(DECODERS))})") from None
