"""The pure step plan at the centre of acdc-exp (see ``plan.py``)."""

from acdc_exp.plan.plan import PHASE_IDS, QAT, MaskStep, Plan, QATSchedule, QatStep, StepPlan

__all__ = ["Plan", "StepPlan", "MaskStep", "QatStep", "QATSchedule", "PHASE_IDS", "QAT"]
