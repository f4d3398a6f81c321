"""`cellpoint serve`: the HTTP contract (docs/service.md), started on a free port in a subprocess, and clients
outside Python (Java with only the JDK, curl) that talk to it."""
from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[1]
CLIENTS = REPO / "tests" / "clients"
MODEL = "objectness-nuclei"
SAMPLE = REPO / "model_cards" / MODEL / "sample1_input.png"
SERVE = [sys.executable, "-c", "from cellpoint.runtime.cli.serve import serve; serve()"]


# ------------------------------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`cellpoint serve` in a subprocess on a free port; stopped by `stop`."""

    def __init__(self, folder: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"serve-{self.port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*SERVE, "--model", MODEL, "--port", str(self.port), *args],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                if call(self, "GET", "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"serve did not answer /health within 60 s: {self.log.read_text()}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def call(server: Server, method: str, path: str, body=None, headers=None, timeout: float = 60):
    """One request on a new connection → (status, headers {lower-case name: value}, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def tiff_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    return buffer.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def raw_headers(image: np.ndarray, accept: str = "image/tiff") -> dict:
    return {"Content-Type": "application/octet-stream", "X-Shape": ",".join(map(str, image.shape)),
            "X-Dtype": image.dtype.name, "Accept": accept}


def error_of(status_body) -> str:
    status, headers, body = status_body
    assert headers["content-type"].startswith("application/json")
    text = body.decode()
    assert text.count("\n") == 1 and text.endswith("\n")        # one line
    message = json.loads(text)
    assert message["status"] == status and message["error"]
    return message["error"]


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """256² of the bundled sample (real nuclei), uint8."""
    from cellpoint.runtime.image_io import read_image
    return np.ascontiguousarray(read_image(SAMPLE)[100:356, 200:456])


@pytest.fixture(scope="module")
def expected(frame) -> np.ndarray:
    """The labels of `frame` segmented in this process."""
    from cellpoint.runtime import Segmenter
    with Segmenter(MODEL) as segmenter:
        labels = segmenter.segment(frame).labels
    assert labels.max() > 3
    return labels


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"), "--workers", "2", "--max-frame-mb", "1")
    yield s
    s.stop()


# ------------------------------------------------------------------------------------------------- the contract

def test_health_and_model(server):
    status, headers, body = call(server, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, headers, body = call(server, "GET", "/model")
    card = json.loads((REPO / "model_cards" / MODEL / "card.json").read_text())
    summary = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert summary["name"] == MODEL and summary["checksum"] == "sha256:" + card["weights"]["sha256"]
    assert summary["version"] and summary["object_diameter_px"] == card["object_diameter_px"]
    assert summary["channels"] == 1 and summary["decoder"] == card["decoder"]["name"]


@pytest.mark.parametrize("form", ["tiff", "png", "raw"])
def test_frames_as_tiff_png_or_raw_pixels_give_the_in_process_labels(server, frame, expected, form):
    if form == "raw":
        body, headers = frame.tobytes(), raw_headers(frame)
    else:
        body = tiff_bytes(frame) if form == "tiff" else png_bytes(frame)
        headers = {"Content-Type": f"image/{form}", "Accept": "image/tiff"}
    status, got, content = call(server, "POST", "/segment", body, headers)
    assert status == 200, content
    assert got["content-type"] == "image/tiff"
    labels = tifffile.imread(io.BytesIO(content))
    assert labels.dtype == np.uint16 and np.array_equal(labels, expected)
    assert int(got["x-cells"]) == int(expected.max())
    assert "segment;dur=" in got["server-timing"]


def test_json_gives_instances_with_outlines(server, frame, expected):
    status, headers, content = call(server, "POST", "/segment", frame.tobytes(), raw_headers(frame, "application/json"))
    assert status == 200 and headers["content-type"] == "application/json"
    result = json.loads(content)
    assert result["model"] == MODEL and result["cells"] == expected.max() == len(result["instances"])
    assert {"segment", "decode", "encode", "queue"} <= set(result["timing_ms"])
    for instance in result["instances"]:
        mask = expected == instance["id"]
        assert instance["area"] == mask.sum()
        polygon = np.array(instance["polygon"])                         # (x, y) pixel corners
        y0, x0, y1, x1 = instance["bbox"]
        assert (polygon.min(0) == (x0, y0)).all() and (polygon.max(0) == (x1, y1)).all()
        contour = polygon.astype(np.float32).reshape(-1, 1, 2)
        _, parts, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))       # the outline is of the largest part:
        rows, cols = np.nonzero(parts == largest)                       # each of its pixel centres lies inside
        assert all(cv2.pointPolygonTest(contour, (c + 0.5, r + 0.5), False) > 0 for r, c in zip(rows, cols))
        shoelace = 0.5 * abs(np.dot(polygon[:, 0], np.roll(polygon[:, 1], -1))
                             - np.dot(np.roll(polygon[:, 0], -1), polygon[:, 1]))
        assert shoelace >= stats[largest, cv2.CC_STAT_AREA]             # equal unless the part has holes


def test_query_parameters_reach_the_segmenter(server, frame):
    status, _, content = call(server, "POST", "/segment?diameter=30&refine_diameter=false&pixel_size=0.5",
                              tiff_bytes(frame), {"Accept": "application/json"})
    result = json.loads(content)
    assert status == 200 and result["diameter"] == 30 and result["diameter_source"] == "given"
    rgb = np.dstack([frame, np.zeros_like(frame), frame // 2])
    status, _, content = call(server, "POST", "/segment?channels=0", tiff_bytes(rgb), {"Accept": "application/json"})
    assert status == 200, content


def test_a_bad_frame_gets_400_with_its_reason_and_the_service_keeps_serving(server, frame):
    post = lambda body, headers=None, path="/segment": call(server, "POST", path, body, headers)  # noqa: E731
    assert "neither a TIFF nor a PNG" in error_of(post(b"this is not an image"))
    assert "empty request body" in error_of(post(b""))
    assert "needs 65536 bytes" in error_of(post(frame.tobytes()[:-1], raw_headers(frame)))
    assert "X-Dtype" in error_of(post(frame.tobytes(), {**raw_headers(frame), "X-Dtype": "complex64"}))
    assert "cannot read the TIFF" in error_of(post(tiff_bytes(frame)[:200]))
    nan = np.full((32, 32), np.nan, np.float32)
    assert "NaN" in error_of(post(nan.tobytes(), raw_headers(nan)))
    assert "stack of 3 planes" in error_of(post(tiff_bytes(np.zeros((3, 40, 40), np.uint8))))
    assert "diameter" in error_of(post(tiff_bytes(frame), path="/segment?diameter=abc"))
    assert "diameter" in error_of(post(tiff_bytes(frame), path="/segment?diameter=100000"))
    assert "unknown query parameter" in error_of(post(tiff_bytes(frame), path="/segment?diamter=30"))
    for result in (post(b"x"), post(tiff_bytes(frame), path="/segment?channels=a")):
        assert result[0] == 400
    status_body = call(server, "POST", "/segment", tiff_bytes(frame), {"Accept": "text/html"})
    assert status_body[0] == 406 and "image/tiff" in error_of(status_body)
    assert call(server, "GET", "/nothing")[0] == 404 and call(server, "GET", "/segment")[0] == 405
    assert call(server, "GET", "/health")[0] == 200
    assert call(server, "POST", "/segment", tiff_bytes(frame), {"Accept": "image/tiff"})[0] == 200


def test_a_frame_over_the_limit_gets_413(server, frame):
    big = np.zeros((1024, 1024), np.uint16)                                  # 2 MB, the limit is 1 MB
    reason = error_of(call(server, "POST", "/segment", big.tobytes(), raw_headers(big)))
    assert "over this service's limit of 1.0 MB" in reason

    def chunks():                                                             # no Content-Length: counted as read
        for _ in range(40):
            yield bytes(64 * 1024)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", "/segment", body=chunks(), encode_chunked=True,
                       headers={"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"})
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    # frames small on the wire that decode to more than the limit are refused before decoding
    small_png = png_bytes(np.zeros((1024, 1024, 4), np.uint16))
    assert len(small_png) < 2 ** 20
    assert "PNG" in error_of(call(server, "POST", "/segment", small_png))
    assert "over the limit" in error_of(call(server, "POST", "/segment", b"x" * 16,
                                             {"X-Shape": "4096,4096", "X-Dtype": "float64"}))
    assert call(server, "GET", "/health")[0] == 200


def test_a_burst_beyond_the_queue_gets_503_and_memory_stays_flat(tmp_path, frame):
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the service's memory from /proc")
    server = Server(tmp_path, "--workers", "1", "--queue", "2")
    try:
        big = np.tile(frame, (2, 2))                                          # 512², about 0.2 s per frame
        body, headers = big.tobytes(), raw_headers(big)

        def burst(n=30) -> list[tuple[int, dict]]:
            results: list = [None] * n
            gate = threading.Barrier(n)

            def one(k):
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                connection.connect()
                gate.wait()
                connection.request("POST", "/segment", body=body, headers=headers)
                response = connection.getresponse()
                results[k] = (response.status, {n.lower(): v for n, v in response.getheaders()}, response.read())
                connection.close()
            threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            return results

        for _ in range(2):                                                    # warm up the arenas
            assert call(server, "POST", "/segment", body, headers)[0] == 200
        burst(6)
        before = server.rss_mb()
        first = burst()
        after_first = server.rss_mb()
        second = burst()
        after_second = server.rss_mb()
        statuses = [r[0] for r in first + second]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(503) >= 30 and statuses.count(200) >= 6, statuses   # at least workers + queue each
        for status, headers_, content in first + second:
            if status == 503:
                assert headers_["retry-after"] == "1" and "busy" in json.loads(content)["error"]
        print(f"burst: {statuses.count(200)} × 200, {statuses.count(503)} × 503; "
              f"RSS {before:.0f} → {after_first:.0f} → {after_second:.0f} MB")
        assert after_first - before < 150 and after_second - after_first < 30, (before, after_first, after_second)
        status, _, content = call(server, "GET", "/health")
        assert status == 200 and json.loads(content)["refused_busy"] >= statuses.count(503)
        assert call(server, "POST", "/segment", body, headers)[0] == 200
    finally:
        server.stop()


def test_a_token_guards_model_and_segment(tmp_path, frame):
    server = Server(tmp_path, "--token", "s3cret", "--workers", "1")
    try:
        assert call(server, "GET", "/health")[0] == 200
        status_body = call(server, "GET", "/model")
        assert status_body[0] == 401 and "Bearer" in error_of(status_body)
        assert call(server, "GET", "/model", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(server, "GET", "/model", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert call(server, "POST", "/segment", tiff_bytes(frame))[0] == 401
        assert call(server, "POST", "/segment", tiff_bytes(frame), {"Authorization": "Bearer s3cret"})[0] == 200
    finally:
        server.stop()


def test_listening_beyond_this_machine_needs_a_token():
    from click.testing import CliRunner
    from cellpoint.runtime.cli.serve import serve
    result = CliRunner().invoke(serve, ["--host", "0.0.0.0"], env={"CELLPOINT_TOKEN": ""})
    assert result.exit_code == 2 and "--token" in result.output and "--insecure" in result.output


def test_without_the_server_library_serve_says_what_to_install():
    block = "import sys; sys.modules['uvicorn'] = None; "
    result = subprocess.run([sys.executable, "-c", block + "from cellpoint.runtime.cli.serve import serve; serve()"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "pip install 'cellpoint[serve]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = subprocess.run([sys.executable, "-c", "import sys, cellpoint.runtime.cli, cellpoint.runtime.cli.serve; "
                             "print('starlette' in sys.modules, 'uvicorn' in sys.modules)"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr   # the CLI stays lean until serve runs


# ---------------------------------------------------------------------------------------------------- clients

def test_java_client_sends_a_tiff_and_gets_the_labels(server, frame, expected, tmp_path):
    javac, java = shutil.which("javac"), shutil.which("java")
    if not javac or not java:
        pytest.skip("javac/java not found: the Java client (tests/clients/SegmentClient.java) is not tested here")
    subprocess.run([javac, "-d", str(tmp_path), str(CLIENTS / "SegmentClient.java")], check=True, timeout=120)
    tifffile.imwrite(tmp_path / "frame.tif", frame)
    run = subprocess.run([java, "-cp", str(tmp_path), "SegmentClient", server.url, str(tmp_path / "frame.tif"),
                          str(tmp_path / "labels.tif")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"cells: {expected.max()}" in run.stdout
    assert np.array_equal(tifffile.imread(tmp_path / "labels.tif"), expected)
    (tmp_path / "frame.raw").write_bytes(frame.tobytes())                     # a camera buffer, no image library
    run = subprocess.run([java, "-cp", str(tmp_path), "SegmentClient", server.url, str(tmp_path / "frame.raw"),
                          str(tmp_path / "raw_labels.tif"), "--shape", "256,256", "--dtype", "uint8"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert np.array_equal(tifffile.imread(tmp_path / "raw_labels.tif"), expected)
    (tmp_path / "bad.tif").write_bytes(b"II*\x00 broken")
    run = subprocess.run([java, "-cp", str(tmp_path), "SegmentClient", server.url, str(tmp_path / "bad.tif"),
                          str(tmp_path / "bad_labels.tif")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "HTTP 400" in run.stderr and "TIFF" in run.stderr


def test_curl_examples(server, frame, expected, tmp_path):
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl not found: the curl example (tests/clients/segment.sh) is not tested here")
    tifffile.imwrite(tmp_path / "frame.tif", frame)
    run = subprocess.run(["sh", str(CLIENTS / "segment.sh"), server.url, str(tmp_path / "frame.tif"),
                          str(tmp_path / "labels.tif")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"cells: {expected.max()}"
    assert np.array_equal(tifffile.imread(tmp_path / "labels.tif"), expected)
    (tmp_path / "frame.raw").write_bytes(frame.tobytes())
    raw = subprocess.run([curl, "--silent", "--show-error", "--fail-with-body", "--data-binary",
                          f"@{tmp_path / 'frame.raw'}", "-H", "Content-Type: application/octet-stream",
                          "-H", "X-Shape: 256,256", "-H", "X-Dtype: uint8", "-H", "Accept: application/json",
                          f"{server.url}/segment"], capture_output=True, text=True, timeout=120)
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)["cells"] == expected.max()
    (tmp_path / "bad.tif").write_bytes(b"not an image")
    run = subprocess.run(["sh", str(CLIENTS / "segment.sh"), server.url, str(tmp_path / "bad.tif"),
                          str(tmp_path / "bad_labels.tif")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "neither a TIFF nor a PNG" in run.stderr
    assert not (tmp_path / "bad_labels.tif").exists()


def test_the_readme_curl_call_runs_as_shown(server, frame, expected, tmp_path):
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl not found: the README's curl call is not tested here")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(x for x in readme.split("## In the acquisition loop", 1)[1].splitlines() if x.startswith("curl "))
    tifffile.imwrite(tmp_path / "frame.tif", frame)
    command = line.replace("http://127.0.0.1:8765", server.url)
    run = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert np.array_equal(tifffile.imread(tmp_path / "labels.tif"), expected)
