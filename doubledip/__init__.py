"""doubledip: Double-DIP unsupervised image decomposition (Gandelsman, Shocher, Irani, CVPR 2019).

    import doubledip as dd
    r = dd.dehaze("hazy.png")            # r.image, r.transmission, r.airlight
    r = dd.separate(mixture)             # r.layers, r.reconstruction
    r.save("out/")

The public names load on first use (PEP 562), so ``import doubledip`` alone imports nothing
heavy, and ``doubledip.exported`` (running exported ONNX files) works without torch. Nothing here
imports triton or onnx, or initialises CUDA.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "SolverConfig": "doubledip.engine.config",
    "UNetConfig": "doubledip.engine.config",
    "SkipUNet": "doubledip.engine.nets.unet",
    "dehaze": "doubledip.engine.tasks.dehazing",
    "separate": "doubledip.engine.tasks.separation",
    "separate_pair": "doubledip.engine.tasks.pair",
    "segment": "doubledip.engine.tasks.segmentation",
    "remove_watermark": "doubledip.engine.tasks.watermark",
    "remove_watermark_multi": "doubledip.engine.tasks.watermark",
    "separate_video": "doubledip.engine.tasks.video",
    "dehaze_video": "doubledip.engine.tasks.video",
    "segment_video": "doubledip.engine.tasks.video",
    "batch": "doubledip.engine.batch",
    "run_many": "doubledip.runs.batch",
    "evaluate": "doubledip.evaluation.suite",
    "load_exported": "doubledip.exported",
    "ShortRunWarning": "doubledip.engine.results",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    else:  # a task registered by a module of its own: dd.<task name> is its API function
        from doubledip.engine.tasks import registry

        spec = next((s for s in registry.tasks() if s.name == name), None) if not name.startswith("_") else None
        if spec is None:
            raise AttributeError(f"module 'doubledip' has no attribute {name!r}")
        return spec.run
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
