#!/bin/sh
# Bake the drift agent into an image (run as root, as the LAST provisioner: the baseline
# records the image as it will boot). It installs drift-agent, configures it, records the
# image's baseline (signed), pushes it to the collector, stamps /etc/drift/image.json and
# leaves drift-agent.service enabled, not running: it starts at the first boot of each
# instance and reports against this baseline.
#
# Settings (environment):
#   DRIFT_DEB                 path of drift-agent_<version>_amd64.deb on the builder
#   DRIFT_IMAGE_ID            the image's identity, e.g. the AMI name (required)
#   DRIFT_IMAGE_VERSION       the build's version (optional)
#   DRIFT_SIGN_KEY            the ed25519 signing key (drift keygen); removed from the image afterwards
#   DRIFT_COLLECTOR           the collector's URL, for the push and for the agent
#   DRIFT_ADMIN_TOKEN_FILE    a file holding the collector's admin token; removed afterwards
#   DRIFT_ENROLL_SECRET_FILE  a file holding the fleet's enrollment secret, installed as
#                             /etc/drift/enroll-secret (mode 0600) for the agent (optional)
#   DRIFT_ROLE                the role of hosts of this image (optional)
set -eu

fail() { echo "drift provision: $*" >&2; exit 2; }

: "${DRIFT_DEB:?set DRIFT_DEB to the path of drift-agent_<version>_amd64.deb}"
: "${DRIFT_IMAGE_ID:?set DRIFT_IMAGE_ID to the image identity (e.g. the AMI name)}"
: "${DRIFT_SIGN_KEY:?set DRIFT_SIGN_KEY to the baseline signing key (drift keygen)}"
: "${DRIFT_COLLECTOR:?set DRIFT_COLLECTOR to the collector URL}"
: "${DRIFT_ADMIN_TOKEN_FILE:?set DRIFT_ADMIN_TOKEN_FILE to a file holding the admin token}"
[ "$(id -u)" -eq 0 ] || fail "run as root (Packer: execute_command = \"sudo -E sh '{{ .Path }}'\")"
[ -r "$DRIFT_DEB" ] || fail "$DRIFT_DEB cannot be read"
[ -r "$DRIFT_SIGN_KEY" ] || fail "$DRIFT_SIGN_KEY cannot be read"
[ -r "$DRIFT_ADMIN_TOKEN_FILE" ] || fail "$DRIFT_ADMIN_TOKEN_FILE cannot be read"

# 1. Install. A booted builder (amazon-ebs) runs systemd: a policy-rc.d that refuses
#    every start keeps the agent from reporting the builder while the package installs.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -i "$DRIFT_DEB"; then
	apt-get install -f -y --no-install-recommends || fail "dpkg -i $DRIFT_DEB failed and its dependencies could not be installed"
fi

# 2. Configure the agent (the file is the package's conffile; upgrades keep these edits).
if [ -n "${DRIFT_ENROLL_SECRET_FILE:-}" ]; then
	install -m 0600 -o root -g root "$DRIFT_ENROLL_SECRET_FILE" /etc/drift/enroll-secret
fi
{
	echo "# Written by the image build ($DRIFT_IMAGE_ID)."
	echo "collector: $DRIFT_COLLECTOR"
	echo "enroll-secret-file: /etc/drift/enroll-secret"
	if [ -n "${DRIFT_ROLE:-}" ]; then echo "role: $DRIFT_ROLE"; fi
} >/etc/drift/agent.yaml

# 3. Baseline: collect, sign, write, push, stamp. Its stat cache stays out of the image.
state=$(mktemp -d)
set -- --image-id "$DRIFT_IMAGE_ID" --sign-key "$DRIFT_SIGN_KEY" --out /etc/drift/baseline.json \
	--push "$DRIFT_COLLECTOR" --admin-token-file "$DRIFT_ADMIN_TOKEN_FILE" --stamp --state-dir "$state"
if [ -n "${DRIFT_IMAGE_VERSION:-}" ]; then set -- "$@" --image-version "$DRIFT_IMAGE_VERSION"; fi
drift baseline "$@"
rm -rf "$state"

# 4. The secrets of the bake never stay in the image.
rm -f "$DRIFT_SIGN_KEY" "$DRIFT_ADMIN_TOKEN_FILE"

# 5. The agent stays enabled: it starts at every instance's first boot.
if [ ! -e /etc/systemd/system/multi-user.target.wants/drift-agent.service ]; then
	fail "drift-agent.service is not enabled (multi-user.target.wants has no link)"
fi
echo "drift provision: image $DRIFT_IMAGE_ID baselined, pushed to $DRIFT_COLLECTOR; drift-agent.service enabled" >&2
