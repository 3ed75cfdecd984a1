#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real: headless Chromium (viewer tests), PostgreSQL
# (a throwaway cluster for the PostgreSQL index tests), DCMTK (third-party DIMSE peers, reference decoders),
# the openssl command (the throwaway CA and certificates of the DICOM TLS tests)
# and GDCM's tools (the reference JPEG 2000 decoder of the transcoding and viewer pixel tests), and Orthanc
# with its DICOMweb plugin (a third-party PACS: the DICOMweb client and DIMSE peer interoperability tests),
# and jq (the README's curl examples, which tests/readme-examples.test.ts runs as written, use it).
# Idempotent: does nothing when they are already there. Needs root or passwordless sudo.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v gdcmconv >/dev/null 2>&1 || need+=(libgdcm-tools)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v jq >/dev/null 2>&1 || need+=(jq)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "The tests need these Debian packages: ${need[*]}. Install them (apt-get install ${need[*]}) or run as root." >&2
    exit 1
  fi
fi
echo "Installing Debian packages for the tests: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
