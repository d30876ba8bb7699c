#!/bin/sh
# Installs OpenLDAP's slapd and the ldap-utils client tools (slapadd, ldapmodify, slappasswd) from
# Debian when /usr/sbin/slapd is missing; says nothing and does nothing when it is there.
# The tests run slapd themselves, on a free port with a configuration of their own, so the
# package's system slapd (port 389) is kept from starting: a policy-rc.d that answers 101 during
# the install, and a stop afterwards in case the package started it anyway.
set -eu

if [ -x /usr/sbin/slapd ] && command -v slapadd >/dev/null 2>&1 && command -v ldapmodify >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
  echo "ensure-slapd: slapd is missing; install it as root: apt-get install slapd ldap-utils" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-slapd: slapd is missing and apt-get is not available; install OpenLDAP slapd and ldap-utils" >&2
  exit 1
fi

echo "ensure-slapd: installing slapd and ldap-utils" >&2
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  OWN_POLICY=1
fi
cleanup() { if [ -n "$OWN_POLICY" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq >/dev/null
# slapd's debconf questions (domain, admin password) get their defaults: the tests never use that database.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slapd ldap-utils >/dev/null

# Should the system slapd have started regardless, stop it and keep it from starting at boot.
$SUDO service slapd stop >/dev/null 2>&1 || true
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable slapd >/dev/null 2>&1 || true; fi
if command -v update-rc.d >/dev/null 2>&1; then $SUDO update-rc.d slapd disable >/dev/null 2>&1 || true; fi

[ -x /usr/sbin/slapd ] || { echo "ensure-slapd: slapd did not install" >&2; exit 1; }
