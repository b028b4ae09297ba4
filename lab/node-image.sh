#!/usr/bin/env bash
# Build (once) the image every lab node starts from: the Debian base of lab/image.sh plus the
# packages the lab's own services need (PostgreSQL and its client tools, psycopg, ufw, and
# etcd/Patroni for the cluster lab), installed but not configured. playbooks/lab/prepare.yml
# then only configures, so no scenario pays for apt. The collection's own packages (pgbouncer,
# haproxy, keepalived, the exporter) are NOT installed, only downloaded into apt's cache: site.yml still
# installs them on a node that has none, as on a user's fresh VM.
# Prints the image name. The tag is a hash of the base image and this recipe.
#   LAB_NETWORK: the podman network the build container uses to reach the Debian mirror
#   (lab/lab.sh creates it first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="$here/containers.conf"
suite=${1:-bookworm}
network=${LAB_NETWORK:-pgbouncer-lab}
# python3-venv: scripts/sanity --node-image runs ansible-test on the node's Python.
installed="postgresql postgresql-client python3-psycopg ufw etcd-server etcd-client patroni python3-etcd python3-venv"
# prometheus: the lab's monitoring host installs it (playbooks/lab/monitoring.yml). The exporter
# where the suite has the prometheus-community one (Debian 13; the pgbouncer_exporter role
# downloads Debian 13's .deb on Debian 12, whose package of that name is another program).
cached="pgbouncer haproxy keepalived prometheus"
[ "$suite" = bookworm ] || cached="$cached prometheus-pgbouncer-exporter"

base=$("$here/image.sh" "$suite")
tag=$( (echo "$base $installed / $cached"; cat "$0") | sha256sum | cut -c1-12)
image="localhost/pgbouncer-lab-node-$suite:$tag"
if podman image exists "$image"; then echo "$image"; exit 0; fi

podman network exists "$network" || { echo "network $network does not exist (lab/lab.sh creates it)" >&2; exit 1; }
builder="pgbouncer-lab-image-build-$suite"
podman rm -f "$builder" >/dev/null 2>&1 || true
trap 'podman rm -f "$builder" >/dev/null 2>&1 || true' EXIT
echo "building $image from $base (apt, about a minute)" >&2
# .250 (Debian 12), .251 (13): outside the addresses lab.sh gives nodes, and apart, so that
# both suites can build at once.
case "$suite" in bookworm) ip=10.129.0.250 ;; *) ip=10.129.0.251 ;; esac
podman run -d --name "$builder" --network "$network" --ip "$ip" "$base" sleep infinity >/dev/null
# No service starts during the build (policy-rc.d), and no PostgreSQL cluster is created:
# prepare.yml creates the one each pg-srv node needs, and client nodes need none.
podman exec -i "$builder" bash -euo pipefail >&2 <<SCRIPT
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/lab-no-main.conf
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends $installed
apt-get install -y -q --download-only --no-install-recommends $cached
# The lab's cluster playbooks start etcd when a node is a member; until then it stays off.
systemctl disable etcd.service >/dev/null 2>&1 || true
rm -f /usr/sbin/policy-rc.d /etc/postgresql-common/createcluster.d/lab-no-main.conf
SCRIPT
podman stop -t 2 "$builder" >/dev/null
podman commit --quiet --change CMD=/sbin/init "$builder" "$image" >/dev/null
# Older builds of this recipe are dead weight.
podman images --format '{{.Repository}}:{{.Tag}}' \
  | grep "^localhost/pgbouncer-lab-node-$suite:" | grep -v ":$tag$" | xargs -r podman rmi >&2 || true
echo "$image"
