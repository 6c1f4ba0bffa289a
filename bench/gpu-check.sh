#!/usr/bin/env bash
# bench/gpu-check.sh — one prepared run on a lent GPU machine (H100/H200): kernel
# correctness per kernel variant, `ras bench` figures, and PyTorch/diffusers at the same
# shapes, side by side. Finishes in under 8 minutes (GPU_CHECK_BUDGET_S, default 420 s,
# bounds the stages; a stage that would start past it is not run and counts as failed).
#
# Prepare on a machine with network first: bench/prepare-gpu-check.sh (Vulkan loader debs
# in .gl/, diffusers wheels in .whl/, target/release/ras). Then, on the GPU machine, from
# the repository root, with .gl, .whl and target/release/ras carried along:
#     bash bench/gpu-check.sh
# Environment:
#     RAS_BIN=path       the ras binary (default target/release/ras; built with
#                        `cargo build --release` only when absent and cargo exists)
#     PYTHON=python3     the Python that has torch (and, after the install stage, diffusers)
#     OUT=dir            write gpu-check.log (and torch_sd3.json, gpu-check-compare.md)
#                        there; default bench/gpu-check.log (git-ignored)
#     GPU_CHECK_BUDGET_S total seconds for the stages (default 420)
#     GPU_CHECK_TESTS=0  skip the kernel tests (they build with cargo first: minutes)
#     TORCH_SD3_ARGS     extra arguments for bench/torch_sd3.py (e.g. --tiny for a dry
#                        run of this script on a machine without a GPU)
#
# Every stage runs under `timeout`; a failing stage does not stop the later ones, and the
# exit status is non-zero when any stage failed, timed out or could not run.

set -uo pipefail # no -e: one stage failing must not hide the others' figures

cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1 # Python's lines interleave with the others' in the log

if [ -n "${OUT:-}" ]; then
	mkdir -p "$OUT"
	LOG=$OUT/gpu-check.log
else
	LOG=bench/gpu-check.log
fi
WORK=$(mktemp -d /tmp/gpu-check.XXXXXX) # per-stage outputs for the comparer ($OUT takes 8 files only)
PY=${PYTHON:-python3}
RAS_BIN=${RAS_BIN:-target/release/ras}
BUDGET_S=${GPU_CHECK_BUDGET_S:-420}
VARIANTS=(portable tiled coopmat) # RAS_KERNELS values: forces the kernel variant
START=$(date +%s)
RESERVE_S=20 # kept back from the budget for the final comparison
FAILED=0
SUMMARY=()

note() { # note STAGE STATUS: one line of the final summary
	SUMMARY+=("$(printf '%-46s %s' "$1" "$2")")
}

fail() { # fail STAGE WHY: a stage that failed without running a command
	echo "!!! $1: $2"
	note "$1" "FAILED ($2)"
	FAILED=1
}

# run_stage NAME BUDGET_S OUTFILE CMD...: run CMD under `timeout`, with the budget cut to
# what is left of the whole run's; its output goes to the log and to OUTFILE.
run_stage() {
	local name=$1 budget=$2 out=$3
	shift 3
	local left=$((START + BUDGET_S - RESERVE_S - $(date +%s)))
	((budget > left)) && budget=$left
	echo
	if ((budget < 5)); then
		echo "=== $name ==="
		fail "$name" "not run: out of time"
		return 1
	fi
	echo "=== $name (limit ${budget} s) ==="
	echo "+ $*"
	local t0 rc status
	t0=$(date +%s)
	# -k: a process that ignores SIGTERM (a hung GPU call) is killed 10 s later.
	timeout -k 10 "$budget" "$@" </dev/null 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	case $rc in
	0) status="ok" ;;
	124 | 137) status="TIMED OUT after ${budget} s" ;;
	*) status="FAILED (exit $rc)" ;;
	esac
	note "$name" "$status, $(($(date +%s) - t0)) s"
	if ((rc != 0)); then
		echo "!!! $name: $status"
		FAILED=1
	fi
	return "$rc"
}

# 1. Vulkan loader and NVIDIA's driver manifest. The machine's image has no libvulkan;
# the loader debs come in .gl/. Its driver folder /usr/local/nvidia is outside the
# loader's search paths, so point the loader (and EGL, for the GL backend) at it.
setup_vulkan() {
	echo "=== Vulkan loader ==="
	local ok=1 f
	if ldconfig -p 2>/dev/null | grep -q libvulkan; then
		echo "libvulkan: already installed"
	elif compgen -G ".gl/*.deb" >/dev/null; then
		for f in .gl/*.deb; do
			dpkg -x "$f" / || echo "!!! dpkg -x $f failed"
		done
		ldconfig
		if ldconfig -p | grep -q libvulkan; then
			echo "libvulkan: unpacked from .gl/"
		else
			fail "Vulkan loader" "libvulkan still missing after unpacking .gl/*.deb"
			ok=0
		fi
	else
		fail "Vulkan loader" "no libvulkan and no .gl/*.deb (run bench/prepare-gpu-check.sh, carry .gl)"
		ok=0
	fi
	local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
	if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
		export VK_DRIVER_FILES=$icd
		export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
		echo "VK_DRIVER_FILES=$VK_DRIVER_FILES"
	fi
	((ok)) && note "Vulkan loader" "ok"
}

# 2. diffusers, carried as wheels (the machine has torch and transformers but no
# diffusers, and no network). --target keeps the image's own site-packages untouched.
setup_diffusers() {
	if compgen -G ".whl/*.whl" >/dev/null; then
		if run_stage "install .whl/ (diffusers)" 90 "$WORK/pip.txt" \
			"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
			--target /tmp/site .whl/*.whl; then
			export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
		fi
	else
		echo "no .whl/*.whl: using whatever diffusers $PY already has"
	fi
	"$PY" -c 'import torch, diffusers; print("torch", torch.__version__, "| diffusers", diffusers.__version__, "| CUDA", torch.cuda.is_available())' ||
		echo "!!! diffusers is not importable: the PyTorch stage will time kernels only and fail"
}

# The ras binary: carried prebuilt (the machine may have no Rust toolchain), else built.
find_ras() {
	if [ -x "$RAS_BIN" ]; then
		# The copy here may have no .git: the checksum ties the figures to the build that
		# bench/prepare-gpu-check.sh reported (with its commit).
		echo "ras binary: $RAS_BIN, sha256 $(sha256sum "$RAS_BIN" | cut -c1-16)"
		return 0
	fi
	if command -v cargo >/dev/null; then
		run_stage "cargo build --release" 300 "$WORK/build.txt" cargo build --release &&
			RAS_BIN=target/release/ras && return 0
	else
		fail "ras binary" "$RAS_BIN missing and no cargo to build it"
	fi
	return 1
}

# 4. The GPU kernel suite once per forced kernel variant (needs cargo: the test binary is
# built here). attention_big_head_dims runs in a process of its own: on an H100 it once
# lost the device, and every later test on the shared device then failed with it.
run_tests() {
	if [ "${GPU_CHECK_TESTS:-1}" = 0 ]; then
		echo
		echo "=== kernel tests: skipped (GPU_CHECK_TESTS=0) ==="
		note "kernel tests" "skipped (GPU_CHECK_TESTS=0)"
		return
	fi
	if ! command -v cargo >/dev/null; then
		echo
		echo "=== kernel tests: skipped (no cargo on this machine) ==="
		note "kernel tests" "skipped (no cargo)"
		return
	fi
	local target=${RAS_KERNEL_TEST:-}
	if [ -z "$target" ]; then
		# The suite's target: tests/kernels* if it has been renamed so, else tests/gpu/.
		if [ -e tests/kernels.rs ] || [ -e tests/kernels/main.rs ]; then target=kernels; else target=gpu; fi
	fi
	run_stage "build tests ($target)" 240 "$WORK/test-build.txt" \
		cargo test --release --test "$target" --no-run || return
	local v
	for v in "${VARIANTS[@]}"; do
		run_stage "tests $target, RAS_KERNELS=$v" 60 "$WORK/test-$v.txt" \
			env RAS_KERNELS="$v" cargo test --release --test "$target" -- --skip attention_big_head_dims
		run_stage "attention_big_head_dims, RAS_KERNELS=$v" 30 "$WORK/test-big-$v.txt" \
			env RAS_KERNELS="$v" cargo test --release --test "$target" -- attention_big_head_dims
		if grep -q "running 0 tests" "$WORK/test-big-$v.txt"; then
			fail "attention_big_head_dims, RAS_KERNELS=$v" "no test of that name"
		fi
	done
}

main() {
	local commit="unknown (no git repository here)"
	if git rev-parse --short HEAD >/dev/null 2>&1; then
		commit=$(git rev-parse --short HEAD)
		git diff --quiet HEAD || commit="$commit (+ uncommitted changes)"
	fi
	echo "gpu-check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $commit, $(uname -m), budget ${BUDGET_S} s"
	echo "log: $LOG"

	setup_vulkan
	setup_diffusers

	# 3. What runs: adapter and driver as ras and as nvidia-smi see them.
	local have_ras=0
	find_ras && have_ras=1
	if ((have_ras)); then
		run_stage "ras info" 30 "$WORK/info.txt" "$RAS_BIN" info
	fi
	if command -v nvidia-smi >/dev/null; then
		run_stage "nvidia-smi" 20 "$WORK/smi.txt" \
			nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
	else
		note "nvidia-smi" "skipped (not installed)"
	fi

	run_tests

	# 5./6. Benchmarks. Cheap stages first, the long `bench ras` last, so that it cannot
	# starve the others of the budget.
	local v kernel_args=() torch_args=()
	read -ra torch_args <<<"${TORCH_SD3_ARGS:-}" # split on spaces: a list of flags
	if ((have_ras)); then
		for v in "${VARIANTS[@]}"; do
			run_stage "bench kernels, RAS_KERNELS=$v" 60 "$WORK/kernels-$v.txt" \
				env RAS_KERNELS="$v" "$RAS_BIN" bench kernels --reps 5
			kernel_args+=(--kernels "$v=$WORK/kernels-$v.txt")
		done
		# Default kernel choice from here on (RAS_KERNELS as the caller set it, if at all).
		run_stage "bench sd3 (24 layers, 1024px, batch 2)" 120 "$WORK/sd3.txt" \
			"$RAS_BIN" bench sd3 --layers 24 --size 1024 --batch 2 --reps 2 --profile
		# The same with f16 activations (printed, not compared: the f32 run is the reference).
		run_stage "bench sd3 f16 activations" 60 "$WORK/sd3-f16.txt" \
			"$RAS_BIN" bench sd3 --layers 24 --size 1024 --batch 2 --reps 2 --precision f16
		# `ras serve` throughput without and with batching (demo model, in-process servers).
		run_stage "bench serve (demo model, --max-batch 1 vs 8)" 60 "$WORK/serve.txt" \
			"$RAS_BIN" bench serve --clients 8 --requests 32 --max-batch 1,8
	fi
	run_stage "PyTorch + diffusers (bench/torch_sd3.py)" 150 "$WORK/torch.txt" \
		"$PY" bench/torch_sd3.py --json "$WORK/torch.json" "${torch_args[@]}"
	if ((have_ras)); then
		run_stage "bench ras (24 layers, 28 steps, 0.5 / 0.125)" 240 "$WORK/ras.txt" \
			"$RAS_BIN" bench ras --layers 24 --size 1024 --steps 28 --ratios 0.5,0.125
	fi

	# 6. ras against PyTorch.
	RESERVE_S=0
	if ((!have_ras)); then
		note "compare ras / PyTorch" "skipped (no ras binary)"
	elif [ -s "$WORK/torch.json" ]; then
		run_stage "compare ras / PyTorch" 30 "$WORK/compare.md" \
			"$PY" bench/compare_torch.py --torch "$WORK/torch.json" "${kernel_args[@]}" \
			--sd3 "$WORK/sd3.txt" --ras "$WORK/ras.txt"
		if [ -n "${OUT:-}" ]; then
			cp "$WORK/torch.json" "$OUT/torch_sd3.json"
			cp "$WORK/compare.md" "$OUT/gpu-check-compare.md"
		fi
	else
		fail "compare ras / PyTorch" "no PyTorch figures"
	fi

	echo
	echo "=== summary ($(($(date +%s) - START)) s) ==="
	printf '%s\n' "${SUMMARY[@]}"
	if ((FAILED)); then
		echo "gpu-check: SOME STAGES FAILED (log: $LOG)"
	else
		echo "gpu-check: all stages passed (log: $LOG)"
	fi
	return "$FAILED"
}

main 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
rm -rf "$WORK"
exit "$rc"
