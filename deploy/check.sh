#!/usr/bin/env bash
# Offline validation of deploy/ (no cluster, no network). From anywhere:
#   deploy/check.sh
# Renders deploy/base and every deploy/overlays/*/ with `kubectl kustomize`, then (check.py)
# validates each rendering — built-in kinds against kubernetes-validate's strict schemas for
# each of $KUBE_VERSIONS, custom resources (ServiceMonitor, PrometheusRule, ScaledObject) by
# shape and cross-references only, since no schema for them is available offline — and runs
# `remarket check-config` on each rendered config; checks alerts.yaml against
# alerts.rules.yml; lints deploy/ with yamllint; runs promtool on the rules.
#
# Tools: kubectl (its built-in kustomize), python3 with kubernetes-validate (PyPI; brings
# PyYAML), yamllint (PyPI), promtool (Debian: prometheus), a remarket binary ($REMARKET_BIN,
# else target/{release,debug}/remarket, else `remarket` on PATH). Override any with
# KUBECTL=, PYTHON=, YAMLLINT=, PROMTOOL=.
#
# Exit status: 0 all passed; 1 a check failed (each failure is printed as FAIL …); 77 nothing
# failed but some checks were skipped because a tool is missing. With CI set, a missing tool
# is a failure (the tests' convention: tests/deploy.rs runs this script).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root" || exit 1

KUBECTL="${KUBECTL:-kubectl}"
PYTHON="${PYTHON:-python3}"
YAMLLINT="${YAMLLINT:-yamllint}"
PROMTOOL="${PROMTOOL:-promtool}"
# Kubernetes versions to validate against: 1.31 (PodDisruptionBudget unhealthyPodEvictionPolicy is
# GA from 1.31) and the newest kubernetes-validate 1.37 knows.
KUBE_VERSIONS="${KUBE_VERSIONS:-1.31 1.37}"

failed=0
skipped=()
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
# missing TOOL WHAT: skip WHAT (or, in CI, fail).
missing() {
    if [ -n "${CI:-}" ]; then
        fail "$1 not found, but CI is set: CI must provide it (.ci/run) — needed for: $2"
    else
        echo "SKIP $2: $1 not found"
        skipped+=("$2")
    fi
}
have() { command -v "$1" >/dev/null 2>&1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- render ------------------------------------------------------------------------------------
targets=(deploy/base)
for d in deploy/overlays/*/; do
    [ -f "$d/kustomization.yaml" ] && targets+=("${d%/}")
done
rendered=()
if have "$KUBECTL"; then
    for t in "${targets[@]}"; do
        name="${t#deploy/}"; name="${name#overlays/}"
        out="$tmp/${name//\//_}.yaml"
        if "$KUBECTL" kustomize "$t" >"$out" 2>"$tmp/err"; then
            rendered+=(--rendered "$name=$out")
        else
            fail "render $t: $(cat "$tmp/err")"
        fi
    done
else
    missing kubectl "rendering the kustomizations"
fi
# A component no overlay uses would never be rendered, hence never validated.
for c in deploy/components/*/; do
    c="${c%/}"
    grep -qs -- "components/$(basename "$c")\$" deploy/overlays/*/kustomization.yaml \
        || fail "$c: no overlay in deploy/overlays/ uses it, so nothing validates it"
done

# --- validate (check.py) -----------------------------------------------------------------------
args=(--version "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
      --dockerfile Dockerfile --base deploy/base)
for v in $KUBE_VERSIONS; do args+=(--kube-version "$v"); done
bin="${REMARKET_BIN:-}"
if [ -z "$bin" ]; then
    for b in target/release/remarket target/debug/remarket; do   # the newer of the two
        if [ -x "$b" ] && { [ -z "$bin" ] || [ "$b" -nt "$bin" ]; }; then bin="$b"; fi
    done
    [ -z "$bin" ] && have remarket && bin="$(command -v remarket)"
    [ -n "$bin" ] && echo "note using $bin for check-config (set REMARKET_BIN to choose)"
fi
if [ -n "$bin" ]; then
    args+=(--remarket-bin "$bin")
else
    missing remarket "remarket check-config of the rendered configs"
fi
if ! have "$PYTHON" || ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
    missing "$PYTHON with PyYAML" "validating the renderings, the alerts sync check"
else
    if ! "$PYTHON" -c 'import kubernetes_validate' 2>/dev/null; then
        missing kubernetes-validate "Kubernetes schema validation"
        args+=(--no-schema)
    fi
    "$PYTHON" "$here/check.py" "${args[@]}" "${rendered[@]}" || fail "check.py (above)"
fi

# --- lint --------------------------------------------------------------------------------------
if have "$YAMLLINT"; then
    if "$YAMLLINT" --strict -c deploy/.yamllint deploy/ >"$tmp/lint" 2>&1; then
        echo "ok   yamllint"
    else
        fail "yamllint:"; cat "$tmp/lint"
    fi
else
    missing yamllint "yamllint of deploy/"
fi
if have "$PROMTOOL"; then
    if (cd deploy/base && "$PROMTOOL" check rules alerts.rules.yml \
            && "$PROMTOOL" test rules alerts_test.yml) >"$tmp/prom" 2>&1; then
        echo "ok   promtool check rules, test rules"
    else
        fail "promtool:"; cat "$tmp/prom"
    fi
else
    missing promtool "promtool check/test rules"
fi

# --- verdict -----------------------------------------------------------------------------------
if [ "$failed" -gt 0 ]; then
    echo "deploy/check.sh: $failed check(s) FAILED"
    exit 1
fi
if [ "${#skipped[@]}" -gt 0 ]; then
    printf 'deploy/check.sh: passed, but skipped (tool missing):'
    printf ' [%s]' "${skipped[@]}"; echo
    exit 77
fi
echo "deploy/check.sh: all checks passed"
