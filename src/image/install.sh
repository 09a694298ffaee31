#!/bin/sh
# Run once by pi-setup-firstboot.service (written by `pi-setup image`): `pi-setup install` with
# the baked profile, and the image bundle when there is one. Everything goes to the journal
# and to install.log on the boot partition, so what happened can be read on any computer.
# The last line is `pi-setup first boot: ok` or `... failed`; `pi-setup image --inspect`
# reads it. On success the unit disables itself; after a failure it stays enabled, and the
# next boot tries again.
set -u
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

@RESTORE@

set -- install --profile "$dir/pi-setup.toml"
if [ -f "$dir/images.tar" ]; then
  set -- "$@" --images "$dir/images.tar"
fi
step install "$bin" "$@"
echo "pi-setup first boot: ok" | tee -a "$log"
systemctl disable pi-setup-firstboot.service || true
