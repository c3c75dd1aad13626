#!/usr/bin/env bash
# Install the Debian packages netliver's processes and tests need, when missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
dpkg -s orthanc-dicomweb >/dev/null 2>&1 || need+=(orthanc-dicomweb)
# dciodvfy validates the RT Dose instances the dosimetry service writes (tests)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
# Node.js runs the independent FHIR engine the upstream-mode tests use (its npm packages are
# installed by the tests into var/node). A Node.js build that bundles npm is kept as it is.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# The tumour-board page's browser tests: headless Chromium and its WebDriver (Debian's builds).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# DejaVu Sans: the figures' font (matplotlib ships it too; the page asks for it first).
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Nothing here stops or reconfigures a running process: an Orthanc, Redis or PostgreSQL on this
# machine may be someone else's (a developer's PACS, another stack, the hospital's). Installing
# the Debian orthanc package starts its own service on port 8042; netliver leaves it running and
# starts its own Orthanc on other ports (infra/stack.py says which when 8042 is taken).
if [[ " ${need[*]} " == *" orthanc "* ]] && [ -f /etc/init.d/orthanc ]; then
  echo "note: the Debian orthanc package may have started its system service on port 8042;" \
       "netliver does not use it and leaves it running; it is the administrator's to keep or not."
fi
