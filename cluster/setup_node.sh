#!/usr/bin/env bash
# Prepare one cluster node for glovesweep; run by setup_commands in cluster/*.yaml on every node (idempotent).
#
#   bash ~/glovesweep/cluster/setup_node.sh [--python uv|PATH-TO-PYTHON3.11] [--extra REQUIREMENT]...
#
# 1. A Python 3.11 virtual environment at ~/glovesweep-venv: "--python uv" (the cloud YAMLs) fetches the exact
#    local interpreter (3.11.7) with uv; a path (on-prem) uses that interpreter.
# 2. The project from ~/glovesweep (the checkout `ray up` synced, .git included), installed editable like the
#    local install, with every dependency pinned by cluster/requirements-lock.txt (pip constraints), plus
#    ray[default] (autoscaler, dashboard) at the locked Ray version and any --extra requirement.
# 3. On a node with an NVIDIA driver (nvidia-smi works): tensorflow[and-cuda] at the locked TensorFlow version.
# 4. ~/.glovesweep_env, sourced by ~/.bashrc (Ray runs every command in an interactive bash): the venv first on
#    PATH and RAY_AUTH_MODE=token, so `ray start` and every driver enforce token authentication.
set -euo pipefail

PROJECT="${GLOVESWEEP_PROJECT:-$HOME/glovesweep}"
VENV="${GLOVESWEEP_VENV:-$HOME/glovesweep-venv}"
LOCK="$PROJECT/cluster/requirements-lock.txt"
UV_VERSION=0.13.9
PYTHON_VERSION=3.11.7
PYTHON=uv
EXTRAS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) PYTHON="$2"; shift 2 ;;
    --extra) EXTRAS+=("$2"); shift 2 ;;
    *) echo "setup_node.sh: unknown argument '$1'; use --python uv|PATH, --extra REQUIREMENT" >&2; exit 2 ;;
  esac
done

if [[ ! -f "$LOCK" ]]; then
  echo "setup_node.sh: $LOCK is missing; file_mounts must sync the checkout to $PROJECT" >&2
  exit 1
fi
if [[ ! -s "$HOME/.ray/auth_token" ]]; then
  echo "setup_node.sh: no Ray token at ~/.ray/auth_token; run 'ray get-auth-token --generate' on your machine" \
       "before 'ray up' (file_mounts copies it to every node)" >&2
  exit 1
fi
locked_version() { sed -n "s/^$1==//p" "$LOCK"; }
RAY_VERSION="$(locked_version ray)"
TF_VERSION="$(locked_version tensorflow)"

if [[ "$PYTHON" == uv ]]; then
  if ! command -v uv >/dev/null && [[ ! -x "$HOME/.local/bin/uv" ]]; then
    curl -LsSf "https://astral.sh/uv/$UV_VERSION/install.sh" | sh
  fi
  UV="$(command -v uv || echo "$HOME/.local/bin/uv")"
  "$UV" venv --allow-existing --python "$PYTHON_VERSION" "$VENV"
  INSTALL=("$UV" pip install --python "$VENV/bin/python")
else
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  INSTALL=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
fi

"${INSTALL[@]}" -c "$LOCK" -e "$PROJECT" "ray[default]==$RAY_VERSION" "${EXTRAS[@]}"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  "${INSTALL[@]}" -c "$LOCK" "tensorflow[and-cuda]==$TF_VERSION"
fi

cat > "$HOME/.glovesweep_env" <<EOF
# Written by glovesweep cluster/setup_node.sh; sourced from ~/.bashrc.
export PATH="$VENV/bin:\$PATH"
export RAY_AUTH_MODE=token
# Written by the start commands: the MLflow tracking URI (and GLOVESWEEP_CLUSTER=1 on the head).
[ -f "\$HOME/.glovesweep_cluster_env" ] && . "\$HOME/.glovesweep_cluster_env"
EOF
grep -qxF 'source ~/.glovesweep_env' "$HOME/.bashrc" 2>/dev/null || echo 'source ~/.glovesweep_env' >> "$HOME/.bashrc"

COMMIT="$(git -C "$PROJECT" rev-parse HEAD 2>/dev/null || echo unknown)"
# Untracked files count too (what .gitignore skips was never synced).
if [[ -z "$(git -C "$PROJECT" status --porcelain 2>/dev/null || echo unknown)" ]]; then STATE="clean"
else STATE="WITH UNCOMMITTED CHANGES"; fi
echo "glovesweep installed from $PROJECT at commit $COMMIT ($STATE); ray $RAY_VERSION, tensorflow $TF_VERSION"
