"""The lr_schedule group's variants (``acdc_exp.registries.LR_SCHEDULES``): each builds the
run's learning-rate and weight-decay segments (SparseML's modifiers, ``plan/lr.py``)."""
