#!/bin/sh
# pi-setup bootstrap, written by `pi-setup image`. systemd runs it once, instead of the normal
# boot, because cmdline.txt says systemd.run=/boot/firmware/pi-setup/bootstrap.sh; when it
# exits 0, systemd.run_success_action=reboot reboots into a normal boot.
#
# It removes exactly its own three cmdline.txt tokens first, so the next boot is a normal one
# whatever happens after; then installs pi-setup and pi-setup-firstboot.service (which runs
# `pi-setup install` on the next boot, with the network up) and applies the settings this
# release has no native first-boot file for. It always exits 0: a Pi stuck in
# kernel-command-line.target would show nothing; a failure is written to install.log instead.
#
# PI_SETUP_BOOT and PI_SETUP_TARGET (default /boot/firmware and /) let a test run it in a
# sandbox laid out like the Pi.
set -u
boot=${PI_SETUP_BOOT:-/boot/firmware}
target=${PI_SETUP_TARGET:-}
dir=$boot/pi-setup
log=$dir/install.log
umask 022

say() {
  echo "pi-setup bootstrap: $*"
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) bootstrap: $*" >>"$log"
}
fail() {
  say "$*"
  echo "pi-setup first boot: failed (bootstrap: $*)" >>"$log"
  exit 0
}

set_hostname() {
  old=$(cat "$target/etc/hostname" 2>/dev/null || true)
  echo "$1" >"$target/etc/hostname" || fail "cannot write /etc/hostname"
  if grep -q '^127\.0\.1\.1' "$target/etc/hosts" 2>/dev/null; then
    sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$1/" "$target/etc/hosts"
  else
    printf '127.0.1.1\t%s\n' "$1" >>"$target/etc/hosts"
  fi
  say "host name $1 (was ${old:-unset})"
}

set_timezone() {
  if [ -f "$target/usr/share/zoneinfo/$1" ]; then  # a file: "Europe" is a directory
    ln -sf "/usr/share/zoneinfo/$1" "$target/etc/localtime"
    echo "$1" >"$target/etc/timezone"
    say "time zone $1"
  else
    say "time zone $1 is not a file in /usr/share/zoneinfo: left as it was"
  fi
}

# Keys in /etc/ssh/authorized_keys.d/USER, which sshd reads through a drop-in: the user is
# only created later in this boot sequence (userconf.txt), so its home may not exist yet.
set_ssh_keys() {
  mkdir -p "$target/etc/ssh/authorized_keys.d" "$target/etc/ssh/sshd_config.d"
  printf '%s' "$2" >"$target/etc/ssh/authorized_keys.d/$1" || fail "cannot write the SSH key"
  chmod 0644 "$target/etc/ssh/authorized_keys.d/$1"
  printf '%s\n' "# Written by pi-setup's first boot: keys given to \`pi-setup image --ssh-key\`." \
    "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/ssh/authorized_keys.d/%u" \
    >"$target/etc/ssh/sshd_config.d/pi-setup.conf"
  say "SSH key(s) for $1"
}

set_wifi() {
  conn=$target/etc/NetworkManager/system-connections
  mkdir -p "$conn"
  (umask 077 && printf '%s' "$1" >"$conn/pi-setup-wifi.nmconnection") || fail "cannot write the Wi-Fi connection"
  chmod 0600 "$conn/pi-setup-wifi.nmconnection"
  if [ -z "$target" ] && command -v raspi-config >/dev/null 2>&1; then
    raspi-config nonint do_wifi_country "$2" || say "setting the Wi-Fi country $2 failed"
  fi
  if [ -z "$target" ] && command -v rfkill >/dev/null 2>&1; then
    rfkill unblock wifi || true
  fi
  say "Wi-Fi network (country $2)"
}

mkdir -p "$dir"
say "started"

# 1. The hook goes first: tokens matched whole, everything else on the line kept byte for byte.
sed -i \
  -e '1s# systemd\.run=/boot/firmware/pi-setup/bootstrap\.sh\( \|$\)#\1#' \
  -e '1s# systemd\.run_success_action=reboot\( \|$\)#\1#' \
  -e '1s# systemd\.unit=kernel-command-line\.target\( \|$\)#\1#' \
  "$boot/cmdline.txt" || fail "cannot edit cmdline.txt"
# The hook is gone, so this script never runs again: it may hold the Wi-Fi key, and must not
# stay on the boot partition (which anyone with the card can read) whatever happens below.
trap 'rm -f "$dir/bootstrap.sh"' EXIT

# 2. pi-setup, its first-boot unit, and the service files.
install -D -m 0755 "$dir/pi-setup" "$target/usr/local/bin/pi-setup" || fail "cannot install /usr/local/bin/pi-setup"
install -D -m 0644 "$dir/pi-setup-firstboot.service" "$target/etc/systemd/system/pi-setup-firstboot.service" \
  || fail "cannot install pi-setup-firstboot.service"
if [ -d "$dir/services" ]; then
  mkdir -p "$target/etc/pi-setup/services"
  for f in "$dir"/services/*.toml; do
    [ -e "$f" ] || continue
    install -m 0644 "$f" "$target/etc/pi-setup/services/" || fail "cannot install $f"
  done
fi
systemctl --root="${target:-/}" enable pi-setup-firstboot.service || fail "cannot enable pi-setup-firstboot.service"

# 3. Settings (empty where the release takes them natively: cloud-init).
@SETTINGS@

say "done: pi-setup install runs on the next boot"
# It may hold the Wi-Fi key: not left on the boot partition, which anyone with the card can read.
rm -f "$dir/bootstrap.sh"
exit 0
