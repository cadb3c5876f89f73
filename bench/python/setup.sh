#!/usr/bin/env bash
# Creates bench/python/.venv with the Python Aqueduct 1.15.0 and numpy, for the
# side-by-side comparison. Needs python3 (3.8+) with venv and access to PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet "aqueduct==1.15.0" numpy
"$here/.venv/bin/python" -c "import aqueduct, numpy; print('aqueduct', aqueduct.__version__ if hasattr(aqueduct, '__version__') else '1.15.0', 'numpy', numpy.__version__)"
