"""Checkpoint on preemption. SLURM signals a job before it is killed (SIGTERM on
``scontrol requeue``/preemption; submitit asks for SIGUSR2 ahead of the time limit). The
handler only raises a flag; the trainer finishes its current step, writes last.pt and stops.
Then the handler that was installed before ours (submitit's, which requeues the job) runs,
and the requeued job continues from last.pt (``trainer.resume=auto``)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Callable, Dict, List, NoReturn, Optional

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def _nothing() -> None:
    pass


class PreemptionGuard:
    def __init__(self, on_request: Callable[[], None], signals=PREEMPTION_SIGNALS) -> None:
        self.on_request = on_request
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self._previous: Dict[int, object] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.received is None:
            self.received = signum
            self.on_request()

    def __enter__(self) -> "PreemptionGuard":
        for sig in self.signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)  # type: ignore[arg-type]
        self.on_request = _nothing  # no more signals come here: let go of what the callback holds (the trainer)

    def forward(self, signum: int) -> "Forwarded":
        """After last.pt is written: let the handler installed before ours act on ``signum``
        (submitit's requeues the job, then exits). What it raised is kept for ``exit`` so
        the caller can first wait for the other ranks."""
        prev = self._previous.get(signum)
        try:
            if callable(prev):
                prev(signum, None)
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a requeue, or its refusal
            return Forwarded(signum, exc)
        return Forwarded(signum, None)


class Forwarded:
    """What the earlier signal handler did; ``exit`` ends the process accordingly."""

    def __init__(self, signum: int, raised: Optional[BaseException]) -> None:
        self.signum = signum
        self.raised = raised

    def exit(self) -> NoReturn:
        """Re-raise what the earlier handler raised, else end without a result (128 + signal):
        a job that returned normally would look finished to submitit and to Hydra's launcher,
        which would stop waiting for the requeued run."""
        if self.raised is not None:
            raise self.raised
        raise SystemExit(128 + self.signum)


__all__: List[str] = ["Forwarded", "PreemptionGuard", "PREEMPTION_SIGNALS"]
