#!/usr/bin/env bash
# Installs what the test suite needs from Debian's archive (idempotent; run by `npm test`).
set -euo pipefail
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v rpm >/dev/null || need+=(rpm)
command -v xmllint >/dev/null || need+=(libxml2-utils)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
# The SSH scan tests run their own sshd (test/helpers/sshd.ts); the package's own service is not used.
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v openssl >/dev/null || need+=(openssl)
command -v systemd-analyze >/dev/null || need+=(systemd)
# File attributes: the tools a test uses to change them, and lsattr, which the files collector runs.
command -v setcap >/dev/null || need+=(libcap2-bin)
command -v setfattr >/dev/null || need+=(attr)
command -v setfacl >/dev/null || need+=(acl)
command -v chattr >/dev/null || need+=(e2fsprogs)
# The agent's package: strip (binutils) for the executable, lintian to check the .deb,
# BusyBox to start the npm launcher as Alpine's /bin/sh does.
command -v strip >/dev/null || need+=(binutils)
command -v lintian >/dev/null || need+=(lintian)
command -v busybox >/dev/null || need+=(busybox)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test setup: needs root to install: ${need[*]}" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# moto's AWS emulator (moto_server) for the enforcement tests (Auto Scaling): a Python
# package, not a Debian one. Say exactly what is missing rather than fail later.
if ! command -v moto_server >/dev/null; then
  echo "test setup: moto_server is missing: the aws-autoscaling enforcement tests need it." >&2
  echo "  install it with: pip install 'moto[server]'   (or pipx install 'moto[server]')" >&2
  exit 1
fi

# A real Debian root for the scan tests, built once with debootstrap (minbase) and cached
# outside the checkout so that fresh clones on this machine reuse it.
cache="${DRIFT_TEST_CACHE:-/var/cache/drift-tests}"
if [ ! -x "$cache/debian-minbase/usr/bin/dpkg" ]; then
  mkdir -p "$cache"
  rm -rf "$cache/debian-minbase.tmp"
  echo "test setup: building a Debian minbase root in $cache (debootstrap, once)" >&2
  debootstrap --variant=minbase bookworm "$cache/debian-minbase.tmp" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
    || { echo "test setup: debootstrap failed, see $cache/debootstrap.log" >&2; tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  mv "$cache/debian-minbase.tmp" "$cache/debian-minbase"
fi
