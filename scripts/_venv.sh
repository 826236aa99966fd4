# Sourced by the scripts: creates or refreshes a virtualenv with the project installed.
# Usage: ensure_venv DIR PYTHON  (idempotent: reinstalls only when pyproject.toml changed)

ensure_venv() {
    local dir=$1 python=$2
    local stamp="$dir/.installed-pyproject"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "error: $python is not Python >= 3.11" >&2
        return 1
    fi
    if [ ! -x "$dir/bin/python" ]; then
        echo "setting up $dir with $("$python" --version)" >&2
        "$python" -m venv "$dir"
    fi
    if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
        "$dir/bin/python" -m pip install --quiet --upgrade pip
        "$dir/bin/python" -m pip install --quiet -e '.[dev]'
        cp pyproject.toml "$stamp"
    fi
}
