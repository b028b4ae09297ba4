#!/usr/bin/env bash
# Build (once) the lab's Debian base image: debootstrap + podman import, no registry needed.
# Prints the image name. The tag is a hash of this recipe, so a changed recipe means a new image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="$here/containers.conf"
suite=${1:-bookworm}
packages=python3,python3-apt,iproute2,systemd,systemd-sysv,dbus,openssh-server,sudo,ca-certificates,less,procps

# The Debian mirror that this machine's apt already uses (LAB_MIRROR overrides).
mirror() {
  if [ -n "${LAB_MIRROR:-}" ]; then echo "$LAB_MIRROR"; return; fi
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '$2 !~ /security/ {print $2; exit}')
  [ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | awk '$2 ~ /debian\/?$/ {print $2; exit}')
  [ -n "$m" ] || { echo "no Debian mirror found in apt sources; set LAB_MIRROR" >&2; exit 1; }
  echo "$m"
}

tag=$( (echo "$suite $packages"; cat "$0") | sha256sum | cut -c1-12)
image="localhost/pgbouncer-lab-$suite:$tag"
if podman image exists "$image"; then echo "$image"; exit 0; fi

state=${LAB_STATE:-$(dirname "$here")/.lab}
mkdir -p "$state"
rootfs=$(mktemp -d "$state/rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "building $image (debootstrap $suite, about a minute)" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$(mirror)" >&2
# A node behaves like a fresh VM: root logs in with the lab key only; every container
# gets its own machine-id at boot.
mkdir -p "$rootfs/root/.ssh"
chmod 0700 "$rootfs/root/.ssh"
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' \
  > "$rootfs/etc/ssh/sshd_config.d/lab.conf"
: > "$rootfs/etc/machine-id"
# No apt runs of its own: a timer that fires at boot would hold the dpkg lock just when the
# lab's playbooks install packages.
for unit in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
rm -f "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | podman import --change CMD=/sbin/init - "$image" >&2
# Older builds of this recipe are dead weight.
podman images --format '{{.Repository}}:{{.Tag}}' \
  | grep "^localhost/pgbouncer-lab-$suite:" | grep -v ":$tag$" | xargs -r podman rmi >&2 || true
echo "$image"
