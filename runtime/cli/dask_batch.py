"""`cellpoint segment --dask ADDRESS|local:N`: a batch spread over the workers of a Dask cluster.

Each input is one task, except slides too large to hold, whose blocks are tasks (merged by the client
in raster order, so the labels are those of a local run). A worker loads the model package once (kept per worker process) and segments the
input exactly as a local run does — the same claims, outputs and completion records in the shared output
folder — and sends back its part of the run report; the client merges them and writes the report. The
output folder must be one every worker can write (a shared file system on a cluster). Needs the `dask`
extra: pip install "cellpoint[dask]"."""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

_SEGMENTERS: dict = {}
"""Loaded models of this worker process, by (model, device, tile, precision)."""


def _segmenter(model, device: str, tile: int, precision: str):
    from cellpoint.runtime.segmenter import Segmenter
    key = (str(model), device, tile, precision)
    if key not in _SEGMENTERS:
        _SEGMENTERS[key] = Segmenter(model, device=device, tile=tile, precision=precision, threads=1)
    return _SEGMENTERS[key]


def segment_on_worker(path: str, out: str, model_settings: dict, run_settings: dict) -> dict:
    """Segment one input on a worker (a top-level function, so Dask can ship it). Returns its report part:
    counts, images, skipped, failures, and the lines a local run would have printed."""
    from cellpoint.runtime.cli.progress import BatchProgress
    from cellpoint.runtime.cli.report import new_report
    from cellpoint.runtime.cli.segment import _Run
    segmenter = _segmenter(**model_settings)
    report = new_report([Path(path)], {})
    run = _Run(segmenter, Path(out), report, None, coco=False, workers=1, **run_settings)
    lines = io.StringIO()
    run.progress = BatchProgress(1, stream=lines, terminal=False)
    run.one(Path(path))
    return {"counts": report["counts"], "images": report["images"], "skipped": report["skipped"],
            "failures": report["failures"],
            "lines": [line for line in lines.getvalue().splitlines() if not line.startswith("progress:")]}


def run_on_dask(address: str, inputs: list[Path], out: Path, model_settings: dict, run_settings: dict,
                on_result: Callable[[Path, dict], None], slides: list[Path] = (),
                segment_slide: Callable[[Path, Callable], None] | None = None) -> None:
    """Submit every input to the cluster at `address` ("local:N" starts a LocalCluster of N worker
    processes of one thread each) and call on_result(input, report part) as each finishes. A task's
    exception (e.g. the output cannot be written) is raised here. `slides` (inputs too large to hold) are
    segmented here by segment_slide(path, run_blocks), with their blocks run as tasks of the cluster
    (`dask_block_runner`) while the other inputs' tasks run beside them."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        import click
        raise click.UsageError("--dask needs Dask: pip install 'cellpoint[dask]'") from None
    cluster = None
    if address.startswith("local:"):
        cluster = LocalCluster(n_workers=int(address.split(":", 1)[1]), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        futures = {client.submit(segment_on_worker, str(path), str(out), model_settings, run_settings,
                                 pure=False): path for path in inputs}
        for path in slides:
            segment_slide(path, dask_block_runner(client, model_settings))
        for future in as_completed(futures):
            on_result(futures[future], future.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def segment_block_on_worker(model_settings: dict, crop, diameter: float, levels, origin: tuple[int, int]):
    """One block of a large image on a worker (`blockwise.BlockTask`): its (labels, table)."""
    return _segmenter(**model_settings).segment_prepared(crop, diameter, levels, network_origin=origin)


def dask_block_runner(client, model_settings: dict, in_flight: int | None = None):
    """A `blockwise.RunBlocks` that runs each block as a task of the Dask `client`'s cluster, with at
    most `in_flight` blocks sent and not yet merged (default: two per worker thread), yielding results
    in the order of the tasks. model_settings: as `_segmenter` takes them (model, device, tile,
    precision)."""
    from collections import deque

    def run(tasks):
        limit = in_flight or 2 * max(1, sum(client.nthreads().values()))
        pending = deque()
        for task in tasks:
            pending.append(client.submit(segment_block_on_worker, model_settings, *task, pure=False))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    return run
