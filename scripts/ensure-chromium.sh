#!/bin/sh
# Installs Debian's Chromium when it is missing: the Temporal UI test drives it headless through
# playwright-core (whose own browser download cannot be used here). Says nothing when it is there.
set -eu

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
  echo "ensure-chromium: Chromium is missing; install it as root: apt-get install chromium" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: Chromium is missing and apt-get is not available; install Chromium" >&2
  exit 1
fi
echo "ensure-chromium: installing chromium" >&2
$SUDO apt-get update -qq >/dev/null
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "ensure-chromium: chromium did not install" >&2; exit 1; }
