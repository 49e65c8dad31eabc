"""doubledip: Double-DIP unsupervised image decomposition (Gandelsman, Shocher, Irani, CVPR 2019).

    import doubledip as dd
    r = dd.dehaze("hazy.png")            # r.image, r.transmission, r.airlight
    r = dd.separate(mixture)             # r.layers, r.reconstruction
    r.save("out/")

Importing this package loads torch but never triton, onnx or CUDA.
"""
from doubledip.engine.batch import batch
from doubledip.engine.config import SolverConfig, UNetConfig
from doubledip.engine.tasks.dehazing import dehaze
from doubledip.engine.tasks.pair import separate_pair
from doubledip.engine.tasks.segmentation import segment
from doubledip.engine.tasks.separation import separate
from doubledip.engine.tasks.watermark import remove_watermark, remove_watermark_multi

__version__ = "0.1.0"


def evaluate(*args, **kwargs):
    """Run the quality suite (see :func:`doubledip.evaluation.suite.evaluate`); returns its rows."""
    from doubledip.evaluation.suite import evaluate as _evaluate

    return _evaluate(*args, **kwargs)

def load_exported(directory, inputs=None):
    """Run the generators that ``result.export(directory)`` wrote; returns their layers and the
    recombined images (see :func:`doubledip.engine.export.load_exported`). Needs onnxruntime for
    ONNX files; imports none of the training code."""
    from doubledip.engine.export import load_exported as _load_exported

    return _load_exported(directory, inputs)

__all__ = [
    "SolverConfig", "UNetConfig",
    "dehaze", "separate", "separate_pair", "segment", "remove_watermark", "remove_watermark_multi",
    "evaluate", "batch", "load_exported",
]
