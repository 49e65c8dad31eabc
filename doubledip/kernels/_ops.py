"""The fused primitives as ``torch.library`` custom ops, so that ``torch.compile`` sees each as one
opaque node (with a fake implementation for shapes) instead of tracing into pointer code.

A leaf: the op modules (blend, exclusion, noise) define their own primitives with ``primitive``.
"""
from __future__ import annotations

import torch

# torch.library.custom_op arrived in torch 2.4; before that the fused ops still run eagerly
DEFINED = hasattr(torch.library, "custom_op")


def compiling() -> bool:
    return torch.compiler.is_compiling()


def primitive(qualname: str, fake):
    """Decorator: ``fn(*args, backend)`` (annotated, as custom ops need) becomes the custom op
    ``qualname`` (e.g. ``"doubledip::blend_fwd"``) with the fake implementation ``fake``.

    Returns a callable with ``fn``'s signature that runs ``fn`` directly in eager mode (no
    custom-op overhead) and the custom op while compiling. The op is defined at decoration time
    (when its op module is imported); ``fn`` imports its backend only when first run.
    """
    def define(fn):
        if not DEFINED:
            return fn
        op = torch.library.custom_op(qualname, mutates_args=())(fn)
        op.register_fake(fake)

        def run(*args):
            return op(*args) if compiling() else fn(*args)

        run.__doc__, run.__name__, run.op = fn.__doc__, fn.__name__, op
        return run

    return define
