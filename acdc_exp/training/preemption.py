"""Checkpoint on preemption. SLURM signals a job before it is killed (SIGTERM on
``scontrol requeue``/preemption; submitit asks for SIGUSR2 ahead of the time limit). The
handler only raises a flag; the trainer finishes its current step, writes last.pt and stops.
Then the handler that was installed before ours (submitit's, which requeues the job) runs,
and the requeued job continues from last.pt (``trainer.resume=auto``)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Callable, Dict, List, NoReturn, Optional, Sequence, Set

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
# which received signal to hand on when ranks (or one rank) got several: submitit requeues on
# its USR signal and only logs SIGTERM, which SLURM may send beside it on preemption
FORWARD_ORDER = (signal.SIGUSR2, signal.SIGUSR1, signal.SIGTERM)


def _nothing() -> None:
    pass


class PreemptionGuard:
    def __init__(self, on_request: Callable[[], None], signals=PREEMPTION_SIGNALS) -> None:
        self.on_request = on_request
        self.signals = tuple(signals)
        self.received: Optional[int] = None  # the first signal
        self.all_received: Set[int] = set()
        self._previous: Dict[int, object] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.all_received.add(signum)
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

    def received_flags(self) -> List[int]:
        """1 for each signal of ``FORWARD_ORDER`` received, else 0 (to combine over ranks)."""
        return [int(sig in self.all_received) for sig in FORWARD_ORDER]

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


def signal_to_forward(flags: Sequence[int]) -> int:
    """The signal to hand on, from ``received_flags`` combined over ranks; 0 when none came."""
    return next((int(sig) for sig, got in zip(FORWARD_ORDER, flags) if got), 0)


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


__all__: List[str] = ["Forwarded", "PreemptionGuard", "PREEMPTION_SIGNALS", "signal_to_forward"]
