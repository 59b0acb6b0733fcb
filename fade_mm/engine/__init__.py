"""Runner hooks for exact, crash-safe training with the stock mmengine ``Runner``.

Importing this package (``fade_mm.det`` and ``fade_mm.seg`` do, so every config's
``custom_imports`` does) registers in mmengine's root ``HOOKS``, seen by mmdet and mmseg:

* :class:`RNGStateHook` -- RNG states in checkpoints, restored at the exact point on resume;
  validation during training no longer perturbs the training stream.
* :class:`SafeCheckpointHook` -- ``CheckpointHook`` with atomic writes, old checkpoints removed
  only after the new one is in place, fallback to the newest intact checkpoint on
  ``--resume``, and a refusal to load a checkpoint of another model (``strict_keys``).

Enable from a config::

    default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
    custom_hooks = [dict(type='RNGStateHook')]
"""
from .checkpoint_hook import (
                              SafeCheckpointHook,
                              atomic_write_text,
                              is_intact_checkpoint,
                              upsampler_types_in_config,
)
from .rng_state_hook import RNGStateHook, get_rng_states, set_rng_states

__all__ = ['RNGStateHook', 'SafeCheckpointHook', 'atomic_write_text', 'get_rng_states',
           'is_intact_checkpoint', 'set_rng_states', 'upsampler_types_in_config']
