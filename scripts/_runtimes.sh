# Sourced by scripts/test. Extra runtimes that `mitm-oauth run` is tested with, where cheap.

NODE_ROUTING_VERSION=24.22.3
# ensure_node_routing: a Node that routes through HTTP(S)_PROXY by itself (NODE_USE_ENV_PROXY),
# beside the machine's own Node 20, in .runtimes/node-$NODE_ROUTING_VERSION/ (about 50 MB, a few
# seconds with npm). The official binary, as the npm registry's node-linux-* packages carry it.
# Idempotent; on failure (no npm, another CPU, no registry) the tests that need it are skipped.
ensure_node_routing() {
    local dir=".runtimes/node-$NODE_ROUTING_VERSION" arch
    [ -x "$dir/bin/node" ] && return 0
    command -v npm >/dev/null || return 0
    case "$(uname -m)" in
        x86_64) arch=x64 ;;
        aarch64) arch=arm64 ;;
        *) return 0 ;;
    esac
    local scratch
    scratch=$(mktemp -d)
    if (cd "$scratch" && npm pack --silent "node-linux-$arch@$NODE_ROUTING_VERSION" >/dev/null 2>&1 &&
        tar xzf node-linux-*.tgz) && "$scratch/package/bin/node" --version >/dev/null 2>&1; then
        mkdir -p .runtimes
        rm -rf "$dir"
        mv "$scratch/package" "$dir"
    fi
    rm -rf "$scratch"
}

# ensure_redis: Debian's redis-server for the shared-store tests, where it is missing and this
# runs as root with apt-get (as CI does). Elsewhere, the tests that need it are skipped and
# scripts/test says so. The tests start their own redis-server on a free port.
ensure_redis() {
    command -v redis-server >/dev/null && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
    echo "Installing redis-server (Debian's package) for the shared-store tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q redis-server >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1; } ||
        echo "could not install redis-server: its tests will be skipped" >&2
}
