"""Subprocess runs of the tools for the end-to-end tests: fade_mm's tools/ and the stock
mmdet / mmseg tools (installed as ``<package>/.mim/tools/``)."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys
from typing import List

import pytest

#: Seconds a tool run may take before the test fails.
TIMEOUT = 900


def stock_tool(package: str, name: str) -> str:
    """Path of the stock ``tools/NAME`` of ``package`` (``'mmdet'`` or ``'mmseg'``); skips the
    test when the package was installed without its ``.mim`` tools."""
    mod = __import__(package)
    path = osp.join(osp.dirname(mod.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        pytest.skip(f'{package} was installed without its .mim tools ({path})')
    return path


def run_python(args: List[str], cwd: str, timeout: int = TIMEOUT) -> str:
    """Runs ``python ARGS`` in ``cwd`` and returns its output (stdout and stderr); fails the
    test with the output's tail when the exit status is not 0.

    One thread per process: the same floating-point reduction order in every run. torch's
    weights-only defaults as a user has them (no ``TORCH_FORCE_*_WEIGHTS_ONLY_LOAD``).
    """
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    for var in ('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', 'TORCH_FORCE_WEIGHTS_ONLY_LOAD'):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'{" ".join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}')
    return proc.stdout
