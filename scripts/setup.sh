#!/usr/bin/env bash
# One idempotent set-up for fade_mm: .venv, torch, mmcv 2.1.0 (built from sdist with ops),
# the pinned OpenMMLab stack and the package itself, then an import check.
#
#   bash scripts/setup.sh            # CPU torch==2.13.0 unless a torch is already in .venv
#   TORCH="torch==2.5.1 --index-url URL" bash ...   # install another torch (e.g. CUDA build)
#   PYTHON=python3.11 bash ...       # interpreter used to create .venv
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
STAMP="$VENV/.fade_mm_setup"

step() { CURRENT_STEP="$1"; echo "[setup] $1"; }
fail() { echo "[setup] FAILED at step: ${CURRENT_STEP:-?} (see the output above)" >&2; }
trap fail ERR

# The stamp holds a hash of everything that decides what gets installed; when it matches and
# the imports still work, a re-run is a no-op (seconds, not minutes).
want_hash=$( (cat requirements.txt pyproject.toml scripts/setup.sh; echo "$TORCH") | sha256sum | cut -c1-16)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_hash" ]] && \
   "$VENV/bin/python" -c "import mmcv._ext, mmdet, mmseg, fade_mm" 2>/dev/null; then
  echo "[setup] up to date ($VENV)"
  exit 0
fi

step "create virtual environment $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

step "build tools (setuptools<81 keeps pkg_resources, which mmcv's setup.py imports)"
"${PIP[@]}" -q --upgrade "pip>=23" "setuptools>=77,<81" wheel ninja "numpy<2"

step "torch ($TORCH)"
if "$PY" -c "import torch" 2>/dev/null && [[ "$TORCH" == "torch==2.13.0" ]]; then
  echo "[setup] keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  # unquoted on purpose: TORCH may carry pip options, e.g. "torch==2.5.1 --index-url URL"
  # shellcheck disable=SC2086
  "${PIP[@]}" -q $TORCH
fi

step "mmcv 2.1.0 from sdist with compiled ops (first time ~20 min; cached wheel afterwards)"
if ! "$PY" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "${PIP[@]}" --no-build-isolation "mmcv==2.1.0" "numpy<2" "opencv-python<4.11"
fi

step "OpenMMLab stack and test requirements (requirements.txt)"
"${PIP[@]}" -q -r requirements.txt

step "fade_mm (editable)"
"${PIP[@]}" -q --no-build-isolation --no-deps -e .

step "verify imports (mmcv._ext, mmdet, mmseg, fade_mm)"
"$PY" - <<'PY'
import torch, mmcv, mmcv._ext, mmengine, mmdet, mmseg, fade_mm
print(f"[setup] torch {torch.__version__}, mmcv {mmcv.__version__} (ops ok), "
      f"mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}")
PY
echo "$want_hash" > "$STAMP"
echo "[setup] done"
