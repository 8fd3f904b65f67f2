"""The data group's variants (``acdc_exp.registries.DATA``): where a run's files come from."""
