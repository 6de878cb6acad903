#!/usr/bin/env bash
# Builds .scratch/hkit.tar.xz (about 1 MiB): Helion 1.4.0 and filecheck, pure Python, from the
# environment whose python3 is given (default: python3).  For helion_only.sh: a call that can
# carry this instead of the three devkit chunks (113 MB over three calls) when too little
# device time is left for them (session 15: 194 s were left after refused starts).
set -eu
python=${1:-python3}
site=$("$python" -c 'import helion, os; print(os.path.dirname(os.path.dirname(helion.__file__)))')
version=$("$python" -c 'import importlib.metadata as m; print(m.version("helion"))')
[ "$version" = "1.4.0" ] || { echo "helion $version in $site; the GPU image needs 1.4.0"; exit 1; }
stage=$(mktemp -d)
(cd "$site" && cp -r helion helion-1.4.0.dist-info filecheck filecheck-*.dist-info "$stage/")
find "$stage" -name __pycache__ -type d -prune -exec rm -rf {} +
mkdir -p .scratch && tar -cJf .scratch/hkit.tar.xz -C "$stage" . && rm -rf "$stage"
ls -la .scratch/hkit.tar.xz
