#!/usr/bin/env bash
# Installs the Debian packages teleway needs, only when missing. With --test, also what the
# test suite needs (the PostgreSQL server, started when it is down). Safe to run repeatedly.
set -euo pipefail
for_tests=0
[ "${1:-}" = "--test" ] && for_tests=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "ensure-system: not root and no sudo; skipping Debian packages" >&2; exit 0; fi
fi

# package -> a file it installs (cheap presence check without dpkg locks)
declare -A NEED=(
  [openssl]=/usr/bin/openssl
)
if [ "$for_tests" = 1 ]; then
  # real peers the tests talk to: Kannel (an ESME), Postfix and swaks (SMTP clients),
  # Debian's chromium (the portal in a real browser, driven by Playwright)
  NEED[kannel]=/usr/sbin/bearerbox
  NEED[postfix]=/usr/sbin/postfix
  NEED[swaks]=/usr/bin/swaks
  # swaks --tls needs these
  NEED[libnet-ssleay-perl]=/usr/share/doc/libnet-ssleay-perl
  NEED[libio-socket-ssl-perl]=/usr/share/doc/libio-socket-ssl-perl
  NEED[chromium]=/usr/bin/chromium
fi
if [ "$for_tests" = 1 ] && [ "${TELEWAY_SKIP_POSTGRES:-0}" != 1 ]; then
  NEED[postgresql]=/usr/bin/pg_ctlcluster
fi
missing=()
for pkg in "${!NEED[@]}"; do
  [ -e "${NEED[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-system: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PostgreSQL on 127.0.0.1:5432 (trust auth for local tests on this machine kind)
if [ "$for_tests" = 1 ] && [ "${TELEWAY_SKIP_POSTGRES:-0}" != 1 ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ]; then
      echo "ensure-system: starting PostgreSQL $version"
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432; then
    psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null | grep -q 1 \
      || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null 2>&1 || true
  else
    echo "ensure-system: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
  fi
fi
