"""The sparsity methods, one module each, registered in ``registries.SPARSITY``: the module's
name is the method's name, ``configs/sparsity/<name>.yaml`` chooses it by ``_target_``."""
