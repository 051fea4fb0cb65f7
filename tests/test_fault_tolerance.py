"""Training survives being killed: SIGKILL at seeded-random moments, one of them inside a checkpoint save,
then ``--resume latest`` ends with exactly the weights of an uninterrupted run, and a damaged checkpoint
is never picked up.

The tests run the real script (``python train/train_sard.py``) on a tiny data set; each launch costs a few
seconds, mostly imports. ``pytest -m slow tests/test_fault_tolerance.py -s`` runs five more kill schedules and
prints each schedule. The checkpoint format itself (every kind of damage detected) is tested in-process in
``test_checkpoints.py``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from fixtures import make_dataset

from sard.files import sha256
from sard.training import checkpoints

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 8
EVERY = 2  # checkpoint_every: saves at steps 2, 4, 6, 8
LAUNCH_TIMEOUT = 900  # seconds; a launch takes a few seconds (minutes on a very busy machine): this only stops a hang


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), defects={"scratch": 3, "dent": 3}, size=(40, 48))


def _command(data, out: Path, resume: bool) -> list[str]:
    command = [
        sys.executable, str(REPO / "train" / "train_sard.py"),
        "--config", str(REPO / "train" / "configs" / "debug.yaml"),
        "--data_root", str(data.data_root), "--category", data.category, "--output_dir", str(out),
        "--max_steps", str(MAX_STEPS), "--checkpoint_every", str(EVERY), "--checkpoints_total_limit", "3",
        "--num_threads", "1", "--seed", "0",
    ]  # fmt: skip
    return command + (["--resume", "latest"] if resume else [])


class Launch:
    """One training process; its output goes to a log file next to the run folder."""

    def __init__(self, data, out: Path, resume: bool, name: str):
        self.log_path = out.parent / f"{out.name}-{name}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                _command(data, out, resume), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.started_ns = time.time_ns()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_when(self, condition, delay: float = 0.0) -> bool:
        """SIGKILL the process ``delay`` seconds after ``condition()`` first holds (polled every millisecond).
        False when the process ended before that."""
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while self.process.poll() is None:
            if condition():
                time.sleep(delay)
                self.process.send_signal(signal.SIGKILL)
                return self.process.wait() == -signal.SIGKILL
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"training hung; log: {self.log_path}")
            time.sleep(0.001)
        return False

    def finish(self) -> str:
        try:
            code = self.process.wait(LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"training hung; log: {self.log_path}")
        assert code == 0, self.log
        return self.log


def _partials(out: Path) -> list[Path]:
    return sorted(out.glob(".checkpoint-*.partial")) if out.is_dir() else []


def _logged_step(launch: Launch, out: Path) -> int:
    """The last step in ``losses.csv`` written by this launch (0 before its first row)."""
    path = out / "losses.csv"
    try:
        if path.stat().st_mtime_ns < launch.started_ns:
            return 0  # the file of an earlier launch
        with open(path, newline="") as handle:
            return max((int(row["step"]) for row in csv.DictReader(handle)), default=0)
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def _newest_intact(out: Path) -> Path | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped damaged ones: expected here
        return checkpoints.find_latest(out)


def _latest_step(out: Path) -> int:
    latest = _newest_intact(out)
    return 0 if latest is None else int(latest.name.split("-")[1])


def _final_state(out: Path) -> dict:
    """Everything the run ends with: the exported pipeline's weights, the training state of the last
    checkpoint (networks, EMA, optimisers) and the logged losses (without wall times)."""
    final = out / f"checkpoint-{MAX_STEPS}"
    assert checkpoints.verify_checkpoint(final) is None
    state = {"pipeline": sha256(out / "denoiser" / "diffusion_pytorch_model.safetensors")}
    for path in sorted((final / "training_state").glob("*.safetensors")):
        state[path.name] = sha256(path)
    optimizers = torch.load(final / "training_state" / "optimizers.pt", weights_only=True)
    for name, optimizer in optimizers.items():
        for index, values in optimizer["state"].items():
            for key, value in values.items():
                state[f"opt_{name}.{index}.{key}"] = hashlib.sha256(value.numpy().tobytes()).hexdigest()
    with open(out / "losses.csv", newline="") as handle:
        state["losses"] = [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv.DictReader(handle)]
    return state


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference") / "run"
    Launch(data, out, resume=False, name="uninterrupted").finish()
    state = _final_state(out)
    assert [int(row["step"]) for row in state["losses"]] == list(range(1, MAX_STEPS + 1))
    return state


def _kill_inside_a_save(data, out: Path, rng: random.Random, name: str, story: list[str]) -> int:
    """Kill while the ``.checkpoint-N.partial`` folder of a random save is being written; returns N. A kill
    that lands just after the rename (the save window is some 50-100 ms here) is retried at the next save."""
    first = rng.choice(range(EVERY, MAX_STEPS, EVERY))

    def saving() -> bool:
        return any(int(p.name.split("-")[1].split(".")[0]) >= first for p in _partials(out))

    for attempt in range(3):
        assert not _partials(out)
        launch = Launch(data, out, resume=True, name=f"{name}-{attempt}")
        delay = rng.uniform(0.0, 0.02) if attempt == 0 else 0.0
        killed = launch.kill_when(saving, delay=delay)
        assert killed, f"the run ended before it was killed: {launch.log}"
        left = _partials(out)
        written = sorted(str(p.relative_to(left[0])) for p in left[0].rglob("*") if p.is_file()) if left else []
        story.append(
            f"killed {delay * 1000:.0f} ms after a save began: {left[0].name if left else 'missed'} {written}"
        )
        if left:
            (partial,) = left
            step = int(partial.name.split("-")[1].split(".")[0])
            # The interrupted save never became a checkpoint; the older ones are intact.
            assert not (out / f"checkpoint-{step}").exists()
            assert _latest_step(out) == step - EVERY
            return step
    pytest.fail("three kills in a row missed the checkpoint save window")


def _kill_at_random(data, out: Path, rng: random.Random, name: str, story: list[str]) -> None:
    """Kill at a random moment of a random training step after the one resumed from."""
    start = _latest_step(out)
    if start >= MAX_STEPS - 1:
        return
    # Steps take over 100 ms each and two more steps and a save follow step MAX_STEPS - 2, so the kill
    # lands before the run ends.
    target = rng.randint(start + 1, max(start + 1, MAX_STEPS - 2))
    delay = rng.uniform(0.0, 0.15) if target <= MAX_STEPS - 2 else 0.0
    launch = Launch(data, out, resume=True, name=name)
    killed = launch.kill_when(lambda: _logged_step(launch, out) >= target, delay=delay)
    assert killed, f"the run ended before it was killed: {launch.log}"
    story.append(f"resumed at step {start}, killed {delay * 1000:.0f} ms after step {target} was logged")


def _damage_newest(out: Path, rng: random.Random) -> Path | None:
    """Flip one byte of a file of the newest complete checkpoint (the size stays the same)."""
    newest = _newest_intact(out)
    if newest is None:
        return None
    files = sorted(p for p in newest.rglob("*.safetensors"))
    target = rng.choice(files)
    data = bytearray(target.read_bytes())
    data[rng.randrange(len(data))] ^= 0xFF
    target.write_bytes(bytes(data))
    return newest


def _resume_to_the_end(data, out: Path, damaged: Path | None, story: list[str]) -> None:
    expected_start = _latest_step(out)  # after the damage: the newest checkpoint that is still intact
    story.append(f"damaged {damaged.name if damaged else 'nothing'}; resuming from step {expected_start} to the end")
    log = Launch(data, out, resume=True, name="final").finish()
    if damaged is not None:
        assert f"Skipping {damaged}" in log and "checksum mismatch" in log
    if expected_start:
        assert f"Resuming from {out / f'checkpoint-{expected_start}'} at step {expected_start}." in log
    else:
        assert "Resuming from" not in log
    assert not _partials(out)
    for folder in out.glob("checkpoint-*"):
        assert checkpoints.verify_checkpoint(folder) is None


def _interrupted_run_matches(data, reference: dict, out: Path, seed: int, random_kills: int) -> None:
    """Kill, damage and resume as ``seed`` draws, then compare with the uninterrupted run."""
    rng = random.Random(seed)
    story = []
    try:
        _kill_inside_a_save(data, out, rng, "save", story)
        for i in range(random_kills):
            _kill_at_random(data, out, rng, f"random-{i}", story)
        damaged = _damage_newest(out, rng)
        _resume_to_the_end(data, out, damaged, story)
        final = _final_state(out)
        different = sorted(k for k in reference if final.get(k) != reference[k])
        assert not different, f"differs from the uninterrupted run: {different}"
    except AssertionError as error:
        raise AssertionError(
            f"{error}\nschedule (seed {seed}):\n  " + "\n  ".join(story) + f"\nlogs: {out.parent}"
        ) from None
    print(f"seed {seed}: " + "; ".join(story) + f"; final state equal ({len(reference)} entries)")


def test_killed_runs_resume_to_the_uninterrupted_weights(data, reference, tmp_path):
    _interrupted_run_matches(data, reference, tmp_path / "run", seed=0, random_kills=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_killed_runs_resume_to_the_uninterrupted_weights_more_schedules(data, reference, tmp_path, seed):
    _interrupted_run_matches(data, reference, tmp_path / "run", seed=seed, random_kills=3)
