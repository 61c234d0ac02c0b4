#!/bin/bash
# The wheels a lent GPU machine lacks (its image holds torch, timm, numpy, pandas, scipy, safetensors, ... but not
# these; /work/.library/device/KINDS.md lists it), at the versions the constraints install here, for Python 3.12.
# Run once here; then each device call names `.whl` in `carry` and starts with
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 any; do platforms+=(--platform "$p"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl \
  pyautoattack==0.2.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  fastcore==1.14.5 corrupt-tta==0.1.7 mpltern==1.0.5
python3 - <<'PY'  # pyautoattack's wheel carries 45 MB of example weights: drop them to fit the 64 MiB a device call may carry
import glob, zipfile, os
path = glob.glob('.whl/pyautoattack-*.whl')[0]
with zipfile.ZipFile(path) as src, zipfile.ZipFile(path + '.slim', 'w', zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if '/examples/' not in item.filename: dst.writestr(item, src.read(item))
os.replace(path + '.slim', path)
PY
du -sh .whl
