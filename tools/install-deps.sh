#!/bin/sh
# Installs the Debian 12 packages nbx needs to build, test and run.
# Idempotent: when every package is already installed it does nothing,
# not even `apt-get update`.
set -eu

PKGS="build-essential pkg-config clang libuv1-dev liblmdb-dev lmdb-utils
libmsgpack-dev libssl-dev openssl libcriterion-dev libjansson-dev libinih-dev
python3 faketime procps"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
