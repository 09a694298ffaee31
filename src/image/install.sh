#!/bin/sh
# Run once by pi-setup-firstboot.service (written by `pi-setup image`): `pi-setup install` with
# the baked profile, and the image bundle when there is one. Everything goes to the journal
# and to install.log on the boot partition, so what happened can be read on any computer.
# The last line is `pi-setup first boot: ok` or `... failed`; `pi-setup image --inspect`
# reads it. On success the unit disables itself; after a failure it stays enabled, and the
# next boot tries again.
set -u
root=${PI_SETUP_ROOT:-}
dir=${PI_SETUP_BOOT:-/boot/firmware}/pi-setup
log=$dir/install.log
bin=${PI_SETUP_BIN:-/usr/local/bin/pi-setup}

step() {
  # $1: what; the rest: the command. Output to the journal (stdout) and install.log.
  what=$1
  shift
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $what: $*" | tee -a "$log"
  rc_file=$(mktemp)
  { "$@" 2>&1; echo $? >"$rc_file"; } | tee -a "$log"
  rc=$(cat "$rc_file")
  rm -f "$rc_file"
  if [ "$rc" != 0 ]; then
    echo "pi-setup first boot: failed ($what exited $rc; the next boot tries again)" | tee -a "$log"
    exit "$rc"
  fi
}

# --restore-from: every volume on the copy target comes back before `install` starts any
# service. The copy is listed (waiting, and saying so, while the network, DNS or the clock are
# not there yet), then each volume is restored: its newest archive, or the newest at or before
# the timestamp given. Done once: a later retry of install does not restore again.
restore_from() {
  copy=$1 at=$2 creds=$3 encrypted=$4
  [ -f "$dir/restore/done" ] && return 0
  mkdir -p "$root/etc/pi-setup"
  install -m 0644 "$dir/pi-setup.toml" "$root/etc/pi-setup/pi-setup.toml"
  # The credentials move off the boot partition (anyone with the card could read them there).
  if [ -n "$creds" ] && [ -f "$dir/restore/credentials" ]; then
    install -D -m 0600 "$dir/restore/credentials" "$root$creds" && rm -f "$dir/restore/credentials"
  fi
  list=$(mktemp)
  err=$(mktemp)
  tries=0
  until "$bin" backups --copy "$copy" >"$list" 2>"$err"; do
    tries=$((tries + 1))
    if [ "$tries" -ge "${PI_SETUP_RETRY_MAX:-360}" ]; then
      cat "$err" | tee -a "$log"
      echo "pi-setup first boot: failed (copy target $copy did not answer after $tries tries; the next boot tries again)" | tee -a "$log"
      exit 1
    fi
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) waiting for copy target $copy (try $tries): $(tail -n 1 "$err")" | tee -a "$log"
    sleep "${PI_SETUP_RETRY_SECS:-10}"
  done
  # Rows: NAME TIMESTAMP SIZE STATE ARCHIVE; only complete copies (ok, or sealed: encrypted).
  picks=$(awk -v at="$at" 'NR > 1 && / (ok|sealed) / && (at == "" || $2 <= at) {
    if ($2 > best[$1]) best[$1] = $2 } END { for (n in best) print n, best[n] }' "$list" | sort)
  for n in $(awk 'NR > 1 && / (ok|sealed) / { print $1 }' "$list" | sort -u); do
    ts=$(echo "$picks" | awk -v n="$n" '$1 == n { print $2 }')
    if [ -z "$ts" ]; then
      echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) restore $n: no archive at or before $at on $copy, left empty" | tee -a "$log"
      continue
    fi
    set -- restore "$n" --from "$copy"
    [ -n "$at" ] && set -- "$@" --at "$ts"
    [ -n "$encrypted" ] && set -- "$@" --identity "$dir/restore/identity"
    step "restore $n" "$bin" "$@"
  done
  rm -f "$list" "$err" "$dir/restore/identity"
  touch "$dir/restore/done"
}

# Stock Raspberry Pi OS Lite has no Docker: install Debian's docker.io (what the README's quick
# start does by hand), waiting for the network like everything else here.
ensure_docker() {
  command -v "${PI_SETUP_DOCKER:-dockerd}" >/dev/null 2>&1 && return 0
  tries=0
  until apt-get update >>"$log" 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge "${PI_SETUP_RETRY_MAX:-360}" ]; then
      echo "pi-setup first boot: failed (no network to install docker.io after $tries tries; the next boot tries again)" | tee -a "$log"
      exit 1
    fi
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) waiting for the network to install docker.io (try $tries)" | tee -a "$log"
    sleep "${PI_SETUP_RETRY_SECS:-10}"
  done
  step "installing docker.io" env DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io
  systemctl enable --now docker.service || true
}

ensure_docker
@RESTORE@

set -- install --profile "$dir/pi-setup.toml"
if [ -f "$dir/images.tar" ]; then
  set -- "$@" --images "$dir/images.tar"
fi
step install "$bin" "$@"
echo "pi-setup first boot: ok" | tee -a "$log"
systemctl disable pi-setup-firstboot.service || true
