#!/usr/bin/env bash
# System packages the tests use: espeak-ng (test speech), ffmpeg/ffprobe (media),
# chromium + driver (browser tests). Installed when missing and we are root;
# otherwise one clear message and the tests that need them say so.
set -euo pipefail
need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "tubemill: missing system packages: ${need[*]}" >&2
  echo "tubemill: install them with: sudo apt-get install ${need[*]}  (tests that need them will be skipped)" >&2
fi
