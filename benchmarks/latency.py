"""Per-frame latency in an acquisition loop: in-process (`Segmenter.segment`) and through `cellpoint serve`, for
512², 1024² and 2048² frames, with one client and with four concurrent clients.

    nice -n 5 python benchmarks/latency.py
    python benchmarks/latency.py --sizes 512 --frames 8 --out /tmp/latency_smoke.json     # a quick check

Frames: gray DSB 2018 images (520×696, `../shared/data/dsb2018_bbbc038`, else the bundled package's samples),
mirror-tiled to each size (real nuclei at their real density), several images in turn. Each frame is segmented
as a user runs the default model: no diameter given (estimated, then refined as the card says).

- in-process: the time of `segmenter.segment(frame)` in this process.
- service: a client sends the frame as raw pixels (`X-Shape`, `X-Dtype`: what a camera buffer gives, no
  encoding), asks for the label image as TIFF, and decodes it into an array; the time is from sending the
  request to having the labels. One persistent connection per client; the service runs with its defaults
  (`--workers 2`, queue 4), so four clients are never refused.
- four clients: four threads each sending its next frame as soon as it has the last one back (closed loop);
  in-process, four threads share one Segmenter.

One client alternates in-process and service frame by frame, and four clients run in-process, service,
service, in-process (half the frames each time), so that a change of machine load hits both alike. Targets
(issue 19): the service adds at most 10% (or 15 ms) to the in-process median at 1024² with one client, and its
p99 is at most 1.5× its median under four clients. Writes --out (JSON, with the Markdown table) and prints
the table."""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tifffile

from cellpoint.runtime import Segmenter
from machine import cpu_model  # benchmarks/machine.py (the script's folder is on sys.path)
from cellpoint.runtime.image_io import read_image

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CELLPOINT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "dsb2018_bbbc038"
MODEL = "objectness-nuclei"


# --------------------------------------------------------------------------------------------------- frames

def source_images(count: int) -> tuple[list[np.ndarray], str]:
    """Up to `count` gray 520×696 DSB images (uint8), else the bundled samples; with a note of which."""
    manifest = DATA / "manifest.json"
    if manifest.is_file():
        entries = [e for e in json.loads(manifest.read_text())
                   if e["kind"] == "gray_dark" and (e["h"], e["w"]) == (520, 696)]
        chosen = sorted(entries, key=lambda e: e["id"])[:count]
        images = [read_image(next((DATA / "stage1_train" / e["id"] / "images").glob("*.png"))) for e in chosen]
        if images:
            return images, f"dsb2018_bbbc038 gray_dark 520×696: {', '.join(e['id'][:8] for e in chosen)}"
    samples = sorted((ROOT / "model_cards" / MODEL).glob("sample*_input.png"))
    return [read_image(p) for p in samples], f"bundled samples of {MODEL}"


def mirror_tile(image: np.ndarray, side: int) -> np.ndarray:
    """`image` repeated with alternate copies flipped (no seams), cropped to side × side."""
    reps = [(0, max(0, side - image.shape[0])), (0, max(0, side - image.shape[1]))]
    return np.ascontiguousarray(np.pad(image, reps, mode="symmetric")[:side, :side])


# -------------------------------------------------------------------------------------------------- service

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(port: int, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-c", "from cellpoint.runtime.cli.serve import serve; serve()", "--model", MODEL,
               "--port", str(port), *extra]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"cellpoint serve exited: {proc.stderr.read().decode()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("cellpoint serve did not start within 120 s")


class Client:
    """One persistent connection to the service; `segment` sends raw pixels and returns (labels, timing)."""

    def __init__(self, port: int):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def segment(self, frame: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        headers = {"Content-Type": "application/octet-stream", "Accept": "image/tiff",
                   "X-Shape": ",".join(map(str, frame.shape)), "X-Dtype": frame.dtype.name}
        try:
            self.connection.request("POST", "/segment", body=memoryview(frame).cast("B"), headers=headers)
            response = self.connection.getresponse()
        except (OSError, http.client.HTTPException):  # the kept connection was closed while idle: reconnect once
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            self.connection.request("POST", "/segment", body=memoryview(frame).cast("B"), headers=headers)
            response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        timing = {}
        for part in (response.getheader("Server-Timing") or "").split(","):
            name, _, dur = part.strip().partition(";dur=")
            if dur:
                timing[name] = float(dur)
        return tifffile.imread(io.BytesIO(body)), timing

    def close(self):
        self.connection.close()


# ---------------------------------------------------------------------------------------------------- timing

def timed(call, frame) -> tuple[float, object]:
    start = time.perf_counter()
    out = call(frame)
    return (time.perf_counter() - start) * 1e3, out


def concurrent(calls: list, frames: list[np.ndarray]) -> list[float]:
    """Each of len(calls) threads takes the next frame as soon as its last is done (closed loop) → latencies ms."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    todo = iter(range(len(frames)))

    def run(call):
        try:
            while True:
                with lock:
                    k = next(todo, None)
                if k is None:
                    return
                ms, _ = timed(call, frames[k])
                with lock:
                    latencies.append(ms)
        except BaseException as error:  # a lost frame would bias the figures: fail the run instead
            failures.append(error)
    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return latencies


def stats(latencies: list[float]) -> dict:
    a = np.asarray(latencies)
    return {"n": int(a.size), "median_ms": round(float(np.median(a)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1)}


def measure_size(segmenter: Segmenter, port: int, sources: list[np.ndarray], side: int, n: int, clients: int) -> dict:
    frames = [mirror_tile(sources[k % len(sources)], side) for k in range(n)]
    service = [Client(port) for _ in range(clients)]
    # warm up both paths on this size (arenas, caches) and check they agree
    labels_here = segmenter.segment(frames[0]).labels
    labels_there, _ = service[0].segment(frames[0])
    agree = bool(np.array_equal(labels_here, labels_there))
    inproc, served, server_timing = [], [], []
    if clients == 1:
        for frame in frames:
            inproc.append(timed(segmenter.segment, frame)[0])
            ms, (_, timing) = timed(service[0].segment, frame)
            served.append(ms)
            server_timing.append(timing)
    else:
        half = n // 2
        inproc += concurrent([segmenter.segment] * clients, frames[:half])
        served += concurrent([c.segment for c in service], frames[:half])
        served += concurrent([c.segment for c in service], frames[half:])
        inproc += concurrent([segmenter.segment] * clients, frames[half:])
    for c in service:
        c.close()
    row = {"size": side, "clients": clients, "labels_equal": agree, "cells": int(labels_here.max()),
           "in_process": stats(inproc), "service": stats(served)}
    if server_timing:
        row["server_stages_median_ms"] = {k: round(float(np.median([t.get(k, 0.0) for t in server_timing])), 1)
                                          for k in server_timing[0]}
    print(json.dumps(row), flush=True)
    return row


# ---------------------------------------------------------------------------------------------------- report

def targets(rows: list[dict]) -> dict:
    out = {}
    one = next((r for r in rows if r["size"] == 1024 and r["clients"] == 1), None)
    if one:
        here, there = one["in_process"]["median_ms"], one["service"]["median_ms"]
        added = there - here
        out["service_adds_at_1024_one_client"] = {"added_ms": round(added, 1),
                                                  "added_pct": round(100 * added / here, 1),
                                                  "met": bool(added <= 15 or added <= 0.10 * here)}
    for r in rows:
        if r["clients"] == 4:
            s = r["service"]
            out[f"p99_over_median_{r['size']}_four_clients"] = {"ratio": round(s["p99_ms"] / s["median_ms"], 2),
                                                                "met": bool(s["p99_ms"] <= 1.5 * s["median_ms"])}
    return out


def table(rows: list[dict]) -> str:
    lines = ["| frame | clients | n | in-process median / p95 / p99 (ms) | service median / p95 / p99 (ms) | "
             "service − in-process, median | service p99 ÷ median |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        a, s = r["in_process"], r["service"]
        added = s["median_ms"] - a["median_ms"]
        lines.append(f"| {r['size']}² | {r['clients']} | {s['n']} | {a['median_ms']:.0f} / {a['p95_ms']:.0f} / "
                     f"{a['p99_ms']:.0f} | {s['median_ms']:.0f} / {s['p95_ms']:.0f} / {s['p99_ms']:.0f} | "
                     f"{added:+.0f} ms ({100 * added / a['median_ms']:+.1f}%) | {s['p99_ms'] / s['median_ms']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="512,1024,2048", help="frame sides, comma-separated")
    parser.add_argument("--frames", type=int, default=60, help="frames per run at 512² (fewer at larger sizes)")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--images", type=int, default=4, help="distinct DSB images the frames are made from")
    parser.add_argument("--serve-args", default="", help="extra options for cellpoint serve, e.g. '--workers 1'")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latency.json"))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    sources, source_note = source_images(args.images)
    load_before = os.getloadavg()
    started = time.time()
    port = free_port()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the service
    proc = start_service(port, args.serve_args.split())
    rows = []
    try:
        segmenter = Segmenter(MODEL)
        for side in sizes:
            # the frame count falls with size so a run stays within minutes (2048²: 0.44× 512²'s)
            n = max(8, round(args.frames * min(1.0, (512 / side) ** 0.6)))
            n -= n % 4
            for c in clients:
                rows.append(measure_size(segmenter, port, sources, side, n, c))
    finally:
        proc.terminate()
        proc.wait(30)
    result = {
        "command": "python benchmarks/latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "niceness": os.nice(0), "model": MODEL, "frames_from": source_note, "request": "raw pixels in, label TIFF out",
        "service_options": args.serve_args or "defaults (--workers 2, queue 4)",
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "seconds": round(time.time() - started, 1), "rows": rows, "targets": targets(rows), "table_md": table(rows)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(result["table_md"])
    print(json.dumps(result["targets"], indent=1))
    print(f"load average before {load_before}, after {result['machine']['load_avg_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
