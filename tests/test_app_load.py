"""The demo under load: many concurrent ``gradio_client`` clients on loopback against ``python app.py``.

Every request must come back with exactly the result the pipeline gives for it alone (so concurrent requests
neither fail nor mix), the queue must stay within its bound (a request that finds it full is refused with
"Queue is full" and retried by the client), the server's memory must level off, and the app must still serve
afterwards. It takes a minute or two, so it is marked slow:

    python -m pytest -m slow tests/test_app_load.py -s      # -s prints the figures

``SARD_LOAD_CLIENTS`` and ``SARD_LOAD_REQUESTS`` (default 20 and 5) change the load.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import make_pipeline

from sard import SARDPipeline
from sard.demo import generate, inputs

gradio_client = pytest.importorskip("gradio_client")
psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = int(os.environ.get("SARD_LOAD_CLIENTS", "20"))
REQUESTS = int(os.environ.get("SARD_LOAD_REQUESTS", "5"))
QUEUE_SIZE = 16  # app.main: demo.queue(max_size=16)
STARTUP_TIMEOUT = 300  # seconds; only stops a server that never comes up
HANG_TIMEOUT = 900  # seconds for one request or one wave; only stops a hang
MAX_RETRIES = 400  # a refused request is retried after a short pause; this only stops an endless loop


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` on a free loopback port with a tiny checkpoint; its temporary files go to a folder
    of its own, so that what it leaves behind can be counted."""
    folder = tmp_path_factory.mktemp("load")
    checkpoint = folder / "checkpoint"
    make_pipeline().save_pretrained(checkpoint)
    (folder / "tmp").mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # as the tests' reference pipeline: the same arithmetic, bit for bit
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TMPDIR": str(folder / "tmp"),
        "GRADIO_TEMP_DIR": str(folder / "tmp" / "gradio"),
    }
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "app.py", "--checkpoint", str(checkpoint), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}: {(folder / 'server.log').read_text()[-3000:]}")
        try:
            _get(url)
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("app.py did not come up")
            time.sleep(0.25)
    try:
        yield url, process, folder
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _request(folder: Path, client_index: int, request_index: int) -> dict:
    """One request's files and options; images vary in mode, bit depth and size, masks in place and size."""
    rng = np.random.default_rng([client_index, request_index])
    height, width = int(rng.integers(16, 48)), int(rng.integers(16, 48))
    kind = ("L", "RGB", "RGBA", "I;16")[(client_index + request_index) % 4]
    if kind == "I;16":
        image = PIL.Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        bands = {"L": (), "RGB": (3,), "RGBA": (4,)}[kind]
        image = PIL.Image.fromarray(rng.integers(0, 256, (height, width, *bands), dtype=np.uint8), kind)
    mask = np.zeros((height, width), bool)
    top, left = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
    mask[top : top + int(rng.integers(1, 12)), left : left + int(rng.integers(1, 12))] = True
    stem = f"c{client_index}-r{request_index}"
    image_path, mask_path = folder / f"{stem}.png", folder / f"{stem}_mask.png"
    image.save(image_path)
    PIL.Image.fromarray(mask).save(mask_path)
    defect = ("", "a", "b")[int(rng.integers(3))]
    return {"image": image_path, "mask": mask_path, "defect": defect, "seed": int(rng.integers(0, 1000)),
            "steps": int(rng.integers(0, 5))}  # fmt: skip


def _expected(pipe, request: dict, folder: Path) -> np.ndarray:
    """What the app must answer: the pipeline's result for this request alone, computed here."""
    image = inputs.read_image(request["image"])
    mask = inputs.read_mask(request["mask"], image.size)
    out = generate.generate(
        pipe, image, mask, request["defect"] or None, request["seed"], request["steps"], directory=folder
    )
    return np.asarray(PIL.Image.open(out.files[0]))


def _predict(client, request: dict) -> str:
    handle = gradio_client.handle_file
    job = client.submit(
        handle(str(request["image"])), handle(str(request["mask"])), request["defect"], request["seed"],
        request["steps"], api_name="/synthesize",
    )  # fmt: skip
    return job.result(timeout=HANG_TIMEOUT)


class Monitor(threading.Thread):
    """Samples the server's queue length (``/gradio_api/queue/status``) and memory (RSS) until stopped."""

    def __init__(self, url: str, pid: int):
        super().__init__(daemon=True)
        self.url, self.process = url, psutil.Process(pid)
        self.queue_sizes, self.rss = [], []
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                self.queue_sizes.append(json.loads(_get(self.url + "gradio_api/queue/status"))["queue_size"])
            except OSError:
                pass
            self.rss.append(self.process.memory_info().rss)
            self.stopped.wait(0.02)


def test_concurrent_clients_all_get_their_own_correct_answer(server, tmp_path):
    url, process, folder = server
    requests = [[_request(tmp_path, c, r) for r in range(REQUESTS)] for c in range(CLIENTS)]
    # The reference loads the server's checkpoint as the server does: the same weights in memory made by
    # make_pipeline() gave 16-bit results one level (of 65535) away on some CPUs (other kernels, not other maths).
    pipe = SARDPipeline.from_pretrained(folder / "checkpoint")
    pipe.set_progress_bar_config(disable=True)
    expected = {(c, r): _expected(pipe, requests[c][r], tmp_path) for c in range(CLIENTS) for r in range(REQUESTS)}

    # Warm up: the first request loads the model. Memory is measured from here on.
    warm = gradio_client.Client(url, verbose=False)
    assert np.array_equal(np.asarray(PIL.Image.open(_predict(warm, requests[0][0]))), expected[0, 0])
    rss_warm = psutil.Process(process.pid).memory_info().rss
    files_warm = sum(len(files) for _, _, files in os.walk(folder / "tmp"))

    wave_rss = []  # the server's memory each time every client has finished its r-th request
    wave = threading.Barrier(CLIENTS, action=lambda: wave_rss.append(psutil.Process(process.pid).memory_info().rss))
    answers, refused, failures = {}, [0] * CLIENTS, []

    def client_loop(c: int):
        try:
            client = gradio_client.Client(url, verbose=False)
            for r in range(REQUESTS):
                for attempt in range(MAX_RETRIES):
                    try:
                        answers[c, r] = np.asarray(PIL.Image.open(_predict(client, requests[c][r])))
                        break
                    except gradio_client.utils.QueueError:  # "Queue is full! Please try again."
                        refused[c] += 1
                        time.sleep(0.05 + 0.01 * (attempt % 10))
                wave.wait(HANG_TIMEOUT)
        except Exception as error:  # reported below, with the client it happened in
            failures.append(f"client {c}: {type(error).__name__}: {error}")
            wave.abort()

    monitor = Monitor(url, process.pid)
    monitor.start()
    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    monitor.stopped.set()
    monitor.join()

    assert not failures, failures[:5]
    wrong = [key for key in expected if key not in answers or not np.array_equal(answers[key], expected[key])]
    assert not wrong, f"{len(wrong)} of {len(expected)} answers missing or wrong, e.g. {wrong[:5]}"
    assert monitor.queue_sizes and max(monitor.queue_sizes) <= QUEUE_SIZE

    # The server still serves, good requests and bad ones, and its process is alive.
    assert np.array_equal(np.asarray(PIL.Image.open(_predict(warm, requests[1][1]))), expected[1, 1])
    empty = tmp_path / "empty.png"
    PIL.Image.new("L", PIL.Image.open(requests[1][1]["image"]).size).save(empty)
    with pytest.raises(gradio_client.exceptions.AppError, match="The mask is empty"):
        _predict(warm, {**requests[1][1], "mask": empty})
    assert process.poll() is None

    # Memory levels off: the last waves grow the server by far less than the first load did.
    growth_late = max(wave_rss[1:]) - wave_rss[1]
    files_after = sum(len(files) for _, _, files in os.walk(folder / "tmp"))
    total = CLIENTS * REQUESTS
    print(
        f"\n{CLIENTS} clients x {REQUESTS} requests = {total} answered correctly in {seconds:.1f} s "
        f"({total / seconds:.1f}/s); refused with 'queue full' and retried: {sum(refused)}; "
        f"queue length max {max(monitor.queue_sizes)} (bound {QUEUE_SIZE}); server RSS "
        f"{rss_warm / 2**20:.0f} MiB warm, waves {[round(r / 2**20) for r in wave_rss]} MiB, peak "
        f"{max(monitor.rss) / 2**20:.0f} MiB; temporary files written: {(files_after - files_warm) / total:.1f} "
        "per request (the app deletes them after an hour)"
    )
    assert growth_late < 64 * 2**20, f"server memory still grew {growth_late / 2**20:.0f} MiB after the 2nd wave"
