"""Process tuning at the entry points (``runtime.py``): glibc's allocator and numpy's
huge pages, applied once, and applied before numpy is imported too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from userportrait import runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tune_process_takes_and_is_idempotent() -> None:
    assert runtime.tune_process() is True
    assert runtime.tune_process() is True


def test_before_numpy_is_imported_its_setting_is_left_in_the_environment() -> None:
    code = (
        "import os, sys\n"
        "from userportrait.runtime import tune_process\n"
        "tune_process()\n"
        "assert 'numpy' not in sys.modules\n"
        "import numpy\n"
        "print(os.environ['NUMPY_MADVISE_HUGEPAGE'], numpy._core.multiarray._set_madvise_hugepage(False))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "False"]  # numpy read it: huge pages were off


def test_a_users_own_setting_stays() -> None:
    code = (
        "import os\n"
        "from userportrait.runtime import tune_process\n"
        "tune_process()\n"
        "print(os.environ['NUMPY_MADVISE_HUGEPAGE'])\n"
    )
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["1"]
