#!/usr/bin/env bash
# Creates (or refreshes) the Python virtual environment of the cross-check scripts and prints
# the path of its python. Idempotent: a stamp file records the requirements it was built from,
# and it is written last, so an environment whose creation was interrupted is rebuilt.
#
# Safe under concurrency: every caller takes an exclusive lock (flock) on a file beside the
# environment before looking at it, so when several tests start at once the first creates the
# environment and the others wait for it and then reuse it.
#
# Environment (for tests of this script): MOESIM_PYENV_DIR (default target/pyenv) and
# MOESIM_PYENV_REQUIREMENTS (default scripts/requirements.txt).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${MOESIM_PYENV_DIR:-$root/target/pyenv}"
req="${MOESIM_PYENV_REQUIREMENTS:-$root/scripts/requirements.txt}"
stamp="$venv/.requirements"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
  # A half-made environment (no stamp, or a stale one) is removed, not patched.
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  cp "$req" "$stamp.tmp"
  mv "$stamp.tmp" "$stamp"
fi
echo "$venv/bin/python"
