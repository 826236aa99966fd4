# Sourced by the scripts. Virtualenvs with the project installed, made or refreshed on demand.

# ensure_venv DIR PYTHON: create DIR with PYTHON and install the project (editable, with the
# dev tools). Idempotent: sets DIR up anew only when pyproject.toml or the Python version
# (PYTHON=python3.12 scripts/demo, say) has changed since.
ensure_venv() {
    local dir=$1 python=$2
    local stamp="$dir/.installed-pyproject" log
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "error: $python is not Python >= 3.11" >&2
        return 1
    fi
    if [ -f "$stamp" ] && cmp -s pyproject.toml "$stamp" && [ -x "$dir/bin/mitmdump" ] &&
        [ "$(_minor "$dir/bin/python")" = "$(_minor "$python")" ]; then
        return 0
    fi
    echo "Setting up $dir with $("$python" --version) (a minute on the first run)..." >&2
    local fresh=()
    if [ -x "$dir/bin/python" ] && [ "$(_minor "$dir/bin/python")" != "$(_minor "$python")" ]; then
        fresh=(--clear)  # another Python: start from nothing
    fi
    log=$(mktemp)
    if ! { "$python" -m venv "${fresh[@]}" "$dir" &&
        "$dir/bin/python" -m pip install --upgrade pip &&
        "$dir/bin/python" -m pip install -e '.[dev]'; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "error: could not set up $dir (pip's output is above)" >&2
        return 1
    fi
    rm -f "$log"
    cp pyproject.toml "$stamp"
}

# _minor PYTHON: its major.minor version, or nothing if it does not run.
_minor() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

# other_pythons: prints the interpreters of Python 3.11 and 3.12 that differ from .venv's,
# so the suite can run on both lines of mitmproxy (11.0 on 3.11, 12.x on 3.12+).
other_pythons() {
    local main version candidate
    main=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    for version in 3.11 3.12; do
        [ "$version" = "$main" ] && continue
        if "python$version" -c '' 2>/dev/null; then
            command -v "python$version"
        elif command -v pyenv >/dev/null; then
            candidate=$(pyenv versions --bare 2>/dev/null | grep -E "^$version\.[0-9]+$" | tail -n 1)
            [ -n "$candidate" ] && pyenv prefix "$candidate" 2>/dev/null | sed 's|$|/bin/python3|'
        fi
    done
}
