#!/usr/bin/env bash
# Installs what Shipyard needs from Debian when it is missing. Idempotent; needs root (or sudo).
# --no-install-recommends matters: recommends pull in crun, which becomes buildah's default
# runtime and fails on these machines (DESIGN.md).
set -euo pipefail

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v skopeo >/dev/null || need+=(skopeo)
[ -x /usr/sbin/runc ] || need+=(runc)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v git >/dev/null || need+=(git)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# The build sandbox: rootless buildah (newuidmap), per-build network namespaces and rules.
command -v newuidmap >/dev/null || need+=(uidmap)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
# The CLI tests drive `--follow` on a real terminal.
command -v tmux >/dev/null || need+=(tmux)
# The dashboard's browser tests: headless Chromium and its WebDriver, from Debian.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
