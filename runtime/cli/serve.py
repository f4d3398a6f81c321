"""`cellpoint serve`: segment frames sent over HTTP by acquisition software (the contract: docs/service.md).

The server library (starlette + uvicorn, the `serve` extra) is imported only when the command runs, so the
rest of the CLI never needs it; when it is missing the command says in one line what to install."""
from __future__ import annotations

import math
import sys

import click

from cellpoint.runtime.cli.segment import _device
from cellpoint.runtime.service.config import DEFAULT_MAX_FRAME_MB, DEFAULT_PORT, ServiceConfig, is_loopback

TOKEN_ENV = "CELLPOINT_TOKEN"
KEEP_ALIVE_S = 60
"""How long an idle client connection stays open: frames may come seconds apart, and a client whose kept
connection was closed under it must reconnect (many HTTP clients only notice when their next send fails)."""


def _require_server_library() -> None:
    """click.ClickException naming the extra when starlette or uvicorn cannot be imported."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        missing = error.name or str(error)
        raise click.ClickException(f"`cellpoint serve` needs the serve extra: pip install 'cellpoint[serve]' "
                                   f"(missing module: {missing})") from None


def _positive_mb(ctx, param, value):
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"must be a positive number of MB, got {value}")
    return value


@click.command("serve")
@click.option("--model", "-m", default=None, help="Bundled model name or package folder [default: objectness-nuclei].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but this machine (e.g. 0.0.0.0) needs --token (or --insecure).")
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--workers", "-w", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Frames segmented at once (threads sharing one loaded model).")
@click.option("--queue", "queue", type=click.IntRange(0, 4096), default=None,
              help="Frames that may wait for a worker; more at once are answered 503 [default: 2 × workers].")
@click.option("--max-frame-mb", type=float, default=DEFAULT_MAX_FRAME_MB, show_default=True, callback=_positive_mb,
              help="Largest frame, as sent and as decoded (MB); larger ones are answered 413.")
@click.option("--token", envvar=TOKEN_ENV, default=None,
              help=f"Require `Authorization: Bearer TOKEN` on /model and /segment [default: ${TOKEN_ENV}].")
@click.option("--insecure", is_flag=True, help="Allow listening beyond this machine without a token.")
@click.option("--device", default="auto", show_default=True, callback=_device,
              help="auto, cpu, cuda[:N] or tensorrt[:N].")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="onnxruntime threads per frame [default: all cores].")
@click.option("--access-log", is_flag=True, help="Print one line per request.")
def serve(model, host, port, workers, queue, max_frame_mb, token, insecure, device, threads, access_log):
    """Serve a model over HTTP: POST a frame to /segment, get labels (TIFF) or instances with outlines (JSON)."""
    _require_server_library()
    if not is_loopback(host) and not token and not insecure:
        raise click.UsageError(f"--host {host} accepts connections from other machines: give --token (or "
                               f"${TOKEN_ENV}), or --insecure to serve without one")
    config = ServiceConfig(workers=workers, queue=2 * workers if queue is None else queue,
                           max_frame_bytes=int(max_frame_mb * 2 ** 20), token=token or None)
    segmenter = _load(model, device, threads)
    import uvicorn

    from cellpoint.runtime.service.app import create_app
    app = create_app(segmenter, config)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"cellpoint serve: {segmenter.name} on http://{shown}:{port} ({config.workers} worker(s), queue "
               f"{config.queue}, frames up to {max_frame_mb:g} MB{', token required' if config.token else ''}); "
               "Ctrl-C stops", err=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=access_log,
                                           server_header=False, timeout_keep_alive=KEEP_ALIVE_S))
    server.run()
    if not server.started:  # e.g. the port is taken; uvicorn has printed why
        sys.exit(1)


def _load(model, device, threads):
    """The Segmenter, or a usage error (exit 2) / PackageUnusable (exit 3) naming the reason, as `cellpoint
    segment` reports them."""
    from cellpoint.runtime.cli.exits import PackageUnusable
    from cellpoint.runtime.errors import DeviceError, PackageError
    from cellpoint.runtime.segmenter import Segmenter
    try:
        return Segmenter(model, device=device, threads=threads)
    except DeviceError as error:
        raise click.BadParameter(str(error), param_hint="'--device'") from None
    except PackageError as error:
        raise PackageUnusable(str(error)) from None
    except Exception as error:  # onnxruntime refusing a graph that passed the checksums
        first = str(error).splitlines()[0] if str(error) else ""
        raise PackageUnusable(f"{model or 'the default model'}: cannot be loaded: {type(error).__name__}: {first}") \
            from None


if __name__ == "__main__":
    serve()
