#!/usr/bin/env bash
# `make sanitize`: every C extension rebuilt with AddressSanitizer + UBSan, then
# the native parity, malformed-input and fuzz-corpus tests and a short fuzz run
# of every target against that build.
#
# The build goes into a copy of the tree (.cdc-local/build-asan), so the
# in-place extensions of the normal build are untouched; the copy comes first
# on PYTHONPATH and the script checks every native module loads from it.
# CPython itself is not built with ASan, so the runtimes are preloaded and
# leak detection is off (CPython's own allocations at exit would drown it).
#
#   FUZZ_SECONDS   seconds per fuzz target (default 20; 0 skips the fuzz run)
#   FUZZ_JOBS      fuzz targets run at once (default 1; CI uses 2, one per core)
#   SANITIZE_JOBS  pytest runs at once (default 1: one run of every file; CI uses 2)
#   SANITIZE_TESTS override the pytest selection
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
BUILD="$ROOT/.cdc-local/build-asan"
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_JOBS=${FUZZ_JOBS:-1}
SANITIZE_JOBS=${SANITIZE_JOBS:-1}
CC_BIN=${CC:-gcc}

if ! command -v "$CC_BIN" >/dev/null; then
  echo "make sanitize: no C compiler ($CC_BIN) on this machine" >&2
  exit 1
fi
ASAN_LIB=$("$CC_BIN" -print-file-name=libasan.so)
UBSAN_LIB=$("$CC_BIN" -print-file-name=libubsan.so)
for lib in "$ASAN_LIB" "$UBSAN_LIB"; do
  [ -e "$lib" ] || { echo "make sanitize: $lib not found (install libasan/libubsan for $CC_BIN)" >&2; exit 1; }
done

rm -rf "$BUILD"
mkdir -p "$BUILD"
tar --exclude='*.so' --exclude=__pycache__ -cf - setup.py pyproject.toml cdc connectors tests \
  | tar -xf - -C "$BUILD"

SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"
echo "[sanitize] building every extension with $SAN"
(cd "$BUILD" && CC="$CC_BIN" CFLAGS="$SAN" LDFLAGS="-fsanitize=address,undefined" \
  CDC_REQUIRE_NATIVE=1 "$PY" setup.py -q build_ext --inplace --force >build.log 2>&1) || {
  cat "$BUILD/build.log" >&2
  echo "make sanitize: the sanitizer build failed" >&2
  exit 1
}

export PYTHONPATH="$BUILD"
export LD_PRELOAD="$ASAN_LIB $UBSAN_LIB"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export CDC_NATIVE=1 CDC_REQUIRE_NATIVE=1
export CDC_FUZZ_DIR="$ROOT/.cdc-local/fuzz-asan"
cd "$BUILD"

# Every native module must load, and from the sanitizer build.
"$PY" -m cdc.native --require | sed 's/^/[sanitize] /'
"$PY" - "$BUILD" <<'EOF'
import importlib, sys
from cdc import native
build = sys.argv[1]
for name in native.expected_modules():
    path = importlib.import_module(name).__file__ or ""
    if not path.startswith(build):
        sys.exit(f"{name} loaded from {path}, not from the sanitizer build {build}")
EOF

# The canary (tests/fuzz/canary.c): a planted heap overflow and a planted
# signed overflow, built and loaded the same way, must be caught.
CANARY="$BUILD/canary"
mkdir -p "$CANARY"
INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
SUFFIX=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
# shellcheck disable=SC2086
LD_PRELOAD="" "$CC_BIN" -shared -fPIC $SAN -O1 -I"$INCLUDE" "$ROOT/tests/fuzz/canary.c" \
  -o "$CANARY/_canary$SUFFIX"
for probe in "heap(8)|heap-buffer-overflow|insufficient space" "sign(1)|signed integer overflow"; do
  call=${probe%%|*}
  want=${probe#*|}
  if out=$(cd "$CANARY" && "$PY" -c "import _canary; _canary.$call" 2>&1); then
    echo "make sanitize: the planted bug _canary.$call was not caught: sanitizers inactive" >&2
    exit 1
  fi
  if ! grep -q -E "$want" <<<"$out"; then
    echo "$out" >&2
    echo "make sanitize: _canary.$call died without a '$want' report" >&2
    exit 1
  fi
done
echo "[sanitize] canary: a planted heap overflow and a signed overflow are caught"

TESTS=${SANITIZE_TESTS:-"tests/unit/serde/test_native_decode.py tests/unit/serde/test_native_encode.py
  tests/unit/serde/test_wire.py tests/unit/serde/test_codec_errors.py
  tests/unit/postgres/test_native_tuple.py tests/unit/postgres/test_decoder.py
  tests/unit/postgres/test_position_text.py tests/unit/postgres/test_snapshot_text_rows.py
  tests/unit/mysql/test_crowimage.py tests/unit/mysql/test_rowimage.py
  tests/unit/sink/test_fast_values.py tests/unit/sink/test_native_records.py
  tests/unit/postgres/test_copyrun.py tests/unit/mysql/test_runs.py
  tests/unit/mysql/test_position_text.py tests/fuzz"}
echo "[sanitize] pytest $(echo $TESTS | wc -w) files under ASan+UBSan, $SANITIZE_JOBS at a time"
if [ "$SANITIZE_JOBS" -gt 1 ]; then
  # One pytest run per line, taken by the next free worker, the longest first.
  # test_native_decode.py is most of the time under ASan, and most of that is
  # one test: it gets a worker of its own and the rest of its file another.
  HEAVY=tests/unit/serde/test_native_decode.py::test_changes_of_every_type_family_decode_the_same
  if [ -z "${SANITIZE_TESTS:-}" ]; then
    PARTS="$HEAVY
tests/unit/serde/test_native_decode.py --deselect $HEAVY
tests/fuzz"
    for f in $TESTS; do
      case $f in tests/unit/serde/test_native_decode.py|tests/fuzz) ;; *) PARTS="$PARTS
$f" ;; esac
    done
  else
    PARTS=$(printf '%s\n' $TESTS)
  fi
  LOGS="$BUILD/pytest-logs"
  mkdir -p "$LOGS"
  rc=0
  # shellcheck disable=SC2016
  printf '%s\n' "$PARTS" | xargs -P "$SANITIZE_JOBS" -I{} sh -c \
    '"$0" -m pytest -p no:cacheprovider -q -x --hypothesis-profile=sanitize $1 \
       >"$2/$(echo "$1" | tr -c "A-Za-z0-9._-" _ | cut -c1-120).log" 2>&1 \
       || { echo "[sanitize] FAILED: $1" >&2; exit 1; }' \
    "$PY" {} "$LOGS" || rc=$?
  for log in "$LOGS"/*.log; do
    echo "[sanitize] --- $(basename "$log" .log)"
    cat "$log"
  done
  [ "$rc" -eq 0 ] || { echo "make sanitize: a test run failed under ASan+UBSan" >&2; exit 1; }
else
  # shellcheck disable=SC2086
  "$PY" -m pytest -p no:cacheprovider -q -x --hypothesis-profile=sanitize $TESTS
fi

if [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "[sanitize] fuzzing every target for ${FUZZ_SECONDS}s under ASan+UBSan, $FUZZ_JOBS at a time"
  "$PY" -m tests.fuzz.run --all --seconds "$FUZZ_SECONDS" --jobs "$FUZZ_JOBS"
fi
echo "[sanitize] passed"
