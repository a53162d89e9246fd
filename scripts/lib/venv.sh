# A private Python environment for the comparison and benchmark scripts,
# under .nadir/venv (git ignores it). Source it; then use "$NADIR_PY".
#
#   nadir_venv "nfstream, pyarrow" nfstream pyarrow
#     first argument: the modules that must import; the rest: what pip installs.

nadir_venv() {
  local venv=.nadir/venv modules=$1
  shift
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "error: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  fi
  if ! "$venv/bin/python" -c "import $modules" 2>/dev/null; then
    echo "==> installing $* into $venv (PyPI)" >&2
    "$venv/bin/pip" install -q "$@" >&2
  fi
  NADIR_PY=$(cd "$venv" && pwd)/bin/python
}
