"""The pure step plan at the centre of acdc-exp (see ``plan.py``)."""

from acdc_exp.plan.plan import PHASE_IDS, Plan, QATSchedule, StepPlan

__all__ = ["Plan", "StepPlan", "QATSchedule", "PHASE_IDS"]
