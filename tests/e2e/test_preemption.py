"""Preemption loses no work (issue 20, items 8 and 9).

- Two gloo ranks launched as SLURM launches tasks (one process each, rank in the environment)
  get submitit's time-limit signal mid-epoch: all ranks wait until last.pt is written and the
  requeue asked for; rank 0 exits as the signal asks, the other rank exits 0 (SLURM ends a step
  at a task's non-zero exit, which would cut rank 0's write short).
- A signal during the run's end stage (int8 evaluation, summary, export) stops it between
  stages; the rerun trains nothing and finishes only what was left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ACDC_SHORT, QAT_RUN, REPO, load_state, small_overrides, train

from acdc_exp.errors import CheckpointError
from acdc_exp.training.preemption import FORWARD_ORDER, PreemptionGuard, signal_to_forward

SIG = signal.SIGUSR2  # submitit's signal ahead of the time limit
STEPS_PER_EPOCH = 22


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_cmd(run, *extra: str) -> list:
    return [
        sys.executable,
        "-m",
        "acdc_exp.cli.train",
        *small_overrides(),
        "logger=console",
        "logger.log_every_steps=1",
        "trainer.device=cpu",
        f"hydra.run.dir={run}",
        *extra,
    ]


def _env(**extra: str) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)


def test_ranks_wait_for_the_checkpoint_and_only_rank_0_exits_non_zero(tmp_path):
    run = tmp_path / "run"
    port = str(_free_port())
    cmd = _train_cmd(run, *ACDC_SHORT)
    procs = [
        subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
        )
        for rank in range(2)
    ]
    deadline = time.time() + 300
    log = []
    for line in procs[0].stdout:  # rank 0 logs every step; the compressed phase starts at epoch 1
        log.append(line)
        if line.startswith("[phase] epoch 1.00"):
            for p in procs:  # as SLURM does: every task gets the signal
                os.kill(p.pid, SIG)
            break
        assert time.time() < deadline, "".join(log[-20:])
    last = run / "checkpoints" / "last.pt"
    seen_when_rank1_ended = None
    while procs[1].poll() is None:  # the moment rank 1 leaves, last.pt must be complete
        time.sleep(0.01)
        assert time.time() < deadline
    seen_when_rank1_ended = last.exists()
    rest = procs[0].stdout.read()
    procs[0].wait(timeout=120)
    assert procs[1].returncode == 0
    assert procs[0].returncode == 128 + SIG, "".join(log[-20:]) + rest[-3000:]
    assert seen_when_rank1_ended
    step = load_state(last)["step"]
    assert step % STEPS_PER_EPOCH and STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH  # mid-epoch, as stopped
    assert f"[preempted] signal {int(SIG)}: state saved at step {step}" in rest


def test_signal_in_the_end_stage_stops_between_stages_and_the_rerun_finishes_the_rest(tmp_path, capsys):
    run = tmp_path / "run"
    # batches of one image make the end stage's evaluations last long enough to be hit
    # (one evaluation, at epoch 6: the batches of one image cost only where they are needed)
    own = ["logger=console", "logger.log_every_steps=1", "trainer.device=cpu", *QAT_RUN]
    own += ["data.val_batch_size=1", "trainer.eval_every_epochs=6"]
    cmd = [*_train_cmd(run), *own]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=_env())
    log = []
    for line in proc.stdout:
        log.append(line)
        if line.startswith("[eval] epoch 6.00"):  # the last evaluation: the end stage comes next
            os.kill(proc.pid, SIG)
    proc.wait(timeout=300)
    out = "".join(log)
    assert proc.returncode == 128 + SIG, out[-3000:]
    assert "[stop] during the run's end stage" in out or "[stop] during the int8 evaluation" in out
    assert not (run / "summary.json").exists()  # the run is not finished: it is to be requeued
    assert load_state(run / "checkpoints" / "last.pt")["step"] == 6 * STEPS_PER_EPOCH

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=_env())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    lines = rerun.stdout.splitlines()
    assert not [x for x in lines if x.startswith(("[eval]", "[phase]", "[masks]"))]  # nothing trained or re-evaluated
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 * STEPS_PER_EPOCH and summary["resumed_at_steps"] == [6 * STEPS_PER_EPOCH]
    assert summary["sparse_int8_top1"] is not None

    # a finished run launched once more (a re-launched sweep) is skipped: its summary stays
    # (in this process: the same check, without another interpreter and torch start)
    before = (run / "summary.json").read_text()
    capsys.readouterr()
    train(own, run)
    assert f"[skip] {run} already finished this run" in capsys.readouterr().out
    assert (run / "summary.json").read_text() == before
    # ... unless its config differs (another run's checkpoint): then the resume check refuses,
    # and the finished run's summary is still there
    with pytest.raises(CheckpointError, match="seed"):
        train([*own, "seed=5"], run)
    assert (run / "summary.json").read_text() == before


def test_forward_keeps_what_the_earlier_handler_raised_until_exit():
    calls = []

    def submitit_like(signum, frame):
        calls.append(signum)
        raise SystemExit(-1)  # submitit requeues, then exits

    previous = signal.signal(SIG, submitit_like)
    try:
        with PreemptionGuard(lambda: None) as guard:
            forwarded = guard.forward(int(SIG))
        assert calls == [SIG]  # the requeue was asked for, and the caller still runs
        try:
            forwarded.exit()
        except SystemExit as exc:
            assert exc.code == -1
        else:
            raise AssertionError("exit() returned")
    finally:
        signal.signal(SIG, previous)


def test_the_requeue_signal_wins_over_sigterm_across_ranks():
    """SLURM may send SIGTERM beside submitit's USR2: forward USR2 (submitit requeues on it and
    only logs SIGTERM), whichever rank got which first."""
    rank0 = [int(sig == signal.SIGTERM) for sig in FORWARD_ORDER]
    rank1 = [int(sig == signal.SIGUSR2) for sig in FORWARD_ORDER]
    combined = [max(a, b) for a, b in zip(rank0, rank1)]
    assert signal_to_forward(combined) == signal.SIGUSR2
    assert signal_to_forward(rank0) == signal.SIGTERM and signal_to_forward([0, 0, 0]) == 0


def test_a_stoppable_evaluation_stops_and_says_so():
    import pytest
    import torch
    from torch import nn

    from acdc_exp.training.metrics import EvaluationStopped, evaluate

    batches = [(torch.randn(2, 4), torch.tensor([0, 1])) for _ in range(3)]
    seen = []
    with pytest.raises(EvaluationStopped):
        evaluate(nn.Linear(4, 2), batches, lambda x: x, torch.device("cpu"), stop=lambda: len(seen) > 0 or seen.append(1))
    assert evaluate(nn.Linear(4, 2), batches, lambda x: x, torch.device("cpu"), stop=lambda: False)["samples"] == 6
