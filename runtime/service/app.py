"""The HTTP routes of `cellpoint serve` (starlette), run by uvicorn. The contract is docs/service.md.

    GET  /health   200 {"status": "ok", ...}: always answered, never needs the token
    GET  /model    the package's card in brief
    POST /segment  a frame in the body (TIFF, PNG or raw pixels); the label image (Accept: image/tiff) or the
                   instances with outlines (Accept: application/json) back

One Segmenter is shared by `workers` threads (onnxruntime and most of the decoders release the GIL). At most
workers + queue frames are admitted at once — counted from before the body is read, so at most that many
bodies are ever held — and a request beyond them gets 503 with Retry-After, so a burst cannot exhaust memory.
Every error is answered with one JSON line naming the reason; the service goes on serving."""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cellpoint.runtime.errors import CellpointError, ImageError, OptionError
from cellpoint.runtime.service import responses
from cellpoint.runtime.service.config import ServiceConfig
from cellpoint.runtime.service.frames import FrameError, decode_frame
from cellpoint.runtime.service.options import segment_options

log = logging.getLogger("cellpoint.serve")
RETRY_AFTER_S = 1


class Refusal(Exception):
    """A request answered with an error status and a one-line reason (and extra headers)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


class Service:
    """The state behind the routes: the Segmenter, the settings, the worker threads and the counters."""

    def __init__(self, segmenter, config: ServiceConfig):
        self.segmenter = segmenter
        self.config = config
        self.pool = ThreadPoolExecutor(config.workers, thread_name_prefix="cellpoint-worker")
        self.admitted = 0        # /segment requests between admission and their answer (event loop only)
        self.served = 0          # frames answered with 200
        self.refused_busy = 0    # answered 503 because workers + queue were taken
        self.errors = 0          # answered 4xx/5xx for any other reason
        self.started = time.monotonic()

    # --------------------------------------------------------------------------------------------- routes

    async def health(self, request: Request) -> Response:
        body = {"status": "ok", "model": self.segmenter.name, "workers": self.config.workers,
                "queue": self.config.queue, "in_flight": self.admitted, "served": self.served,
                "refused_busy": self.refused_busy, "errors": self.errors,
                "uptime_s": round(time.monotonic() - self.started, 1)}
        return Response(responses.encode(body), media_type=responses.JSON)

    async def model(self, request: Request) -> Response:
        try:
            self._check_token(request)
        except Refusal as refusal:
            return self._refuse(refusal)
        return Response(responses.encode(model_summary(self.segmenter)), media_type=responses.JSON)

    async def segment(self, request: Request) -> Response:
        start = time.perf_counter()
        try:
            self._check_token(request)
            kind = responses.choose_format(request.headers.get("accept"))
            if kind is None:
                raise Refusal(406, f"cannot answer with {request.headers.get('accept')!r}: accept {responses.TIFF} "
                                   f"(the label image) or {responses.JSON} (the instances)")
            try:
                options = segment_options(request.query_params)
            except OptionError as error:
                raise Refusal(400, str(error)) from None
            self._check_declared_length(request)
            if self.admitted >= self.config.capacity:
                self.refused_busy += 1
                raise Refusal(503, f"busy: {self.config.workers} frame(s) being segmented and {self.config.queue} "
                                   "waiting; retry shortly", {"Retry-After": str(RETRY_AFTER_S)})
        except Refusal as refusal:
            return self._refuse(refusal)
        self.admitted += 1
        try:
            body = await self._read_body(request)
            read_ms = (time.perf_counter() - start) * 1e3
            loop = asyncio.get_running_loop()
            content, headers = await loop.run_in_executor(
                self.pool, self._work, body, dict(request.headers), options, kind, time.perf_counter(), read_ms)
            del body
            self.served += 1
            return Response(content, media_type=kind, headers=headers)
        except Refusal as refusal:
            return self._refuse(refusal)
        except (ImageError, OptionError) as error:   # FrameError is an ImageError
            return self._refuse(Refusal(getattr(error, "status", 400), str(error)))
        except CellpointError as error:
            log.error("segment failed: %s", error)
            return self._refuse(Refusal(500, str(error)))
        except Exception as error:  # a bug or a resource failure: answer it, keep serving
            log.exception("segment failed")
            return self._refuse(Refusal(500, f"internal error: {type(error).__name__}: {error}"))
        finally:
            self.admitted -= 1

    # ---------------------------------------------------------------------------------------------- steps

    def _work(self, body, headers: dict, options: dict, kind: str, submitted: float, read_ms: float):
        """In a worker thread: decode, segment, encode → (response bytes, headers). Raises FrameError,
        ImageError or OptionError for a frame or option the client must change."""
        began = time.perf_counter()
        timing = {"read": read_ms, "queue": (began - submitted) * 1e3}
        image = decode_frame(body, headers, self.config.max_frame_bytes)
        decoded = time.perf_counter()
        result = self.segmenter.segment(image, **options)
        segmented = time.perf_counter()
        timing.update(decode=(decoded - began) * 1e3, segment=(segmented - decoded) * 1e3)
        if kind == responses.TIFF:
            content = responses.labels_tiff(result.labels)
            timing["encode"] = (time.perf_counter() - segmented) * 1e3
        else:  # the JSON carries the timing, so "encode" is the outlines; the final serialisation is not in it
            document = responses.result_document(result)
            timing["encode"] = (time.perf_counter() - segmented) * 1e3
            content = responses.encode({**document, "timing_ms": {k: round(v, 2) for k, v in timing.items()}})
        headers = {"X-Cells": str(len(result.table["id"])), "X-Model": result.model,
                   "X-Diameter": f"{result.diameter:.3f}", "X-Diameter-Source": result.diameter_source,
                   "Server-Timing": ", ".join(f"{k};dur={v:.1f}" for k, v in timing.items())}
        return content, headers

    def _check_token(self, request: Request) -> None:
        token = self.config.token
        if not token:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise Refusal(401, "this service needs a token: send the header Authorization: Bearer <token>",
                          {"WWW-Authenticate": "Bearer"})

    def _check_declared_length(self, request: Request) -> None:
        """413 from Content-Length, before any of the body is read."""
        declared = request.headers.get("content-length")
        if declared is None:
            return
        try:
            length = int(declared)
        except ValueError:
            raise Refusal(400, f"Content-Length {declared!r} is not a number") from None
        if length > self.config.max_frame_bytes:
            raise Refusal(413, f"frame of {length / 2 ** 20:.1f} MB is over this service's limit of "
                               f"{self.config.max_frame_bytes / 2 ** 20:.1f} MB (--max-frame-mb)")

    async def _read_body(self, request: Request) -> bytes:
        """The body, or 413 as soon as it passes the limit (a chunked body declares no length)."""
        limit = self.config.max_frame_bytes
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"frame is over this service's limit of {limit / 2 ** 20:.1f} MB (--max-frame-mb)")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _refuse(self, refusal: Refusal) -> Response:
        if refusal.status != 503:
            self.errors += 1
        return Response(responses.error_json(refusal.status, refusal.reason), status_code=refusal.status,
                        media_type=responses.JSON, headers=refusal.headers)


def model_summary(segmenter) -> dict:
    """The card in brief: name, version, checksum (the main graph's sha256), the cell diameter it expects (px,
    and µm when the card says), channels and polarity, decoder, and how this service runs it."""
    from cellpoint.runtime import __version__
    card = segmenter.package.card
    spec = card.inputs[0]
    return {"name": card.name, "version": getattr(card, "version", None) or card.created or None,
            "checksum": f"sha256:{card.weights.sha256}", "description": card.description,
            "method": card.method, "object_diameter_px": float(card.object_diameter_px),
            "object_diameter_um": card.object_diameter_um, "pixel_size_um": card.pixel_size_um,
            "refine_diameter": bool(card.refine_diameter), "estimates_diameter": card.scale is not None,
            "channels": int(spec.channels), "polarity": spec.polarity, "decoder": card.decoder.name,
            "precision": segmenter.precision, "provider": segmenter.provider, "runtime": __version__}


def create_app(segmenter, config: ServiceConfig) -> Starlette:
    """The ASGI app serving `segmenter` (a loaded Segmenter) under `config`."""
    service = Service(segmenter, config)

    async def http_error(request: Request, error: HTTPException) -> Response:  # 404, 405 as one JSON line
        return Response(responses.error_json(error.status_code, error.detail), status_code=error.status_code,
                        media_type=responses.JSON, headers=getattr(error, "headers", None))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.pool.shutdown(wait=False, cancel_futures=True)

    app = Starlette(routes=[Route("/health", service.health, methods=["GET"]),
                            Route("/model", service.model, methods=["GET"]),
                            Route("/segment", service.segment, methods=["POST"])],
                    exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.service = service
    return app
