#!/usr/bin/env bash
# Set up everything stresslab needs, idempotently: a virtualenv in .venv with the
# pinned PyTorch build and the package, and Fashion-MNIST from Debian's
# `dataset-fashion-mnist` package where apt is available. A second run with nothing
# changed takes about a second. Needs no network beyond the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

# $1: the pyproject extras to install ("" for the core package: what `make study` needs;
# `make check` passes every extra so the optional integrations are tested too).
# $2: "browser" also installs Debian's chromium for the report's browser test.
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
extras=${1-}
with_browser=${2-}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

case "$(uname -m)" in
  aarch64|arm64) torch_pins="torch==2.9.1 torchvision==0.24.1" ;;
  *)             torch_pins="torch==2.14.1 torchvision==0.29.1" ;;
esac

stamp="$VENV/.stresslab-setup-${extras:-core}"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing packages into $VENV (first time: a few minutes)"
  # The torch pins are constraints for every install, so an extra that depends on torch
  # (a peer library, Ray, timm) can never swap the pinned build for another.
  constraints="$VENV/torch-constraints.txt"
  printf '%s\n' $torch_pins > "$constraints"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $torch_pins
  target="."
  [ -n "$extras" ] && target=".[$extras]"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" -e "$target"
  case ",$extras," in
    *,bench,*)  # see the bench extra in pyproject.toml: its needs are all installed already
      "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "torchattacks>=3.5" ;;
  esac
  echo "$want" > "$stamp"
fi

apt_install() {  # apt_install PACKAGE: as root, or through sudo; silent when neither works
  if ! command -v apt-get >/dev/null 2>&1; then return 1; fi
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    return 1
  fi
}

fmnist=/usr/share/datasets/fashion-mnist
if [ ! -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
  echo "setup: installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
  apt_install dataset-fashion-mnist \
    || echo "setup: no apt here; give Fashion-MNIST with --data-root DIR (the four IDX files)" >&2
fi

if [ "$with_browser" = browser ] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium for the report's browser test (apt-get install chromium)"
  apt_install chromium || echo "setup: no apt here; the browser test will be skipped" >&2
fi
echo "setup: ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
