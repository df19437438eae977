#!/usr/bin/env bash
# Install the few Debian packages ksdiff needs, only when they are missing (idempotent, quick when done).
#   scripts/sysdeps.sh            EGL/Mesa for headless rendering, libgomp, PortAudio (`ksdiff stream --mic`)
#   scripts/sysdeps.sh --browser  the same, plus Debian's chromium for the browser test of `ksdiff serve`
set -euo pipefail
need=()
ldconfig -p | grep -q 'libEGL.so.1' || need+=(libegl1)
ldconfig -p | grep -q 'libEGL_mesa.so.0' || need+=(libegl-mesa0)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || need+=(libgl1-mesa-dri)
ldconfig -p | grep -q 'libGL.so.1' || need+=(libgl1)
ldconfig -p | grep -q 'libgomp.so.1' || need+=(libgomp1)
ldconfig -p | grep -q 'libportaudio.so.2' || need+=(libportaudio2)
if [ "${1:-}" = "--browser" ]; then
  command -v chromium >/dev/null || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "sysdeps: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "sysdeps: missing ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
  fi
fi
