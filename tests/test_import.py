"""``import doubledip`` stays light: no triton, onnx or CUDA initialisation."""
import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, doubledip, torch\n"
        "heavy = [m for m in ('triton', 'onnx', 'onnxruntime', 'skimage') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert not torch.cuda.is_initialized()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_public_api_names():
    import doubledip as dd

    for name in ("dehaze", "separate", "separate_pair", "segment", "remove_watermark",
                 "remove_watermark_multi", "SolverConfig", "UNetConfig"):
        assert callable(getattr(dd, name)), name
