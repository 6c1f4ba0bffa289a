#!/usr/bin/env bash
# bench/prepare-gpu-check.sh — run HERE (a machine with network to Debian and PyPI), in
# the checkout the GPU run is sent from, before bench/gpu-check.sh runs on a lent GPU
# machine. That machine has PyTorch and transformers but no diffusers, no Vulkan loader,
# maybe no Rust toolchain, and no network, so everything it needs travels with the tree:
#   .gl/                Debian's Vulkan/GL loader debs (unpacked there with dpkg -x)
#   .whl/               diffusers and those of its requirements the machine's image lacks
#   target/release/ras  the release binary
# .gl/ and .whl/ are ignored through .git/info/exclude (not .gitignore: they are this
# workplace's device plumbing, not the project's); name them in the device call's carry.
#
#     bash bench/prepare-gpu-check.sh              # everything
#     bash bench/prepare-gpu-check.sh --no-build   # downloads only
#     bash bench/prepare-gpu-check.sh --no-gl --no-wheels   # build only
set -euo pipefail

DIFFUSERS_VERSION=0.42.1
# Python packages the GPU machine's image already has (its package list, 2026-11; its
# huggingface_hub 1.33 and safetensors 0.8.0 meet diffusers 0.42.1's minimums).
PRESENT="filelock huggingface-hub numpy regex requests safetensors pillow httpx"
# diffusers imports the importlib_metadata backport only on Python < 3.8; the machine's
# python3 is 3.12, whose importlib.metadata serves instead.
NOT_NEEDED="importlib-metadata"

gl=1 wheels=1 build=1
for arg in "$@"; do
	case $arg in
	--no-gl) gl=0 ;;
	--no-wheels) wheels=0 ;;
	--no-build) build=0 ;;
	*)
		sed -n '2,/^set -euo/p' "$0" | sed '$d'
		exit 2
		;;
	esac
done

cd "$(dirname "$0")/.."

normalize() { # package names as pip compares them: lower case, '_' and '.' as '-'
	tr '[:upper:]' '[:lower:]' | tr '_.' '--'
}

# The exclude file is shared by every worktree of the repository: the common git dir's.
exclude=$(git rev-parse --git-common-dir)/info/exclude
mkdir -p "$(dirname "$exclude")"
for p in /.whl/ /.gl/; do
	grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"
done

if ((gl)); then
	echo "=== Vulkan/GL loader debs -> .gl/ ==="
	# amd64 whatever this machine is (the GPU machine is x86-64), with package lists kept
	# apart from the system's in /tmp/amd64.
	mkdir -p .gl /tmp/amd64/partial
	o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
	apt-get "${o[@]}" -q update
	(cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
	ls -l .gl
fi

if ((wheels)); then
	echo "=== diffusers $DIFFUSERS_VERSION and missing requirements -> .whl/ ==="
	mkdir -p .whl
	# For the GPU machine's python3 (CPython 3.12, x86-64 glibc); pure-Python wheels
	# (py3-none-any) match any of these.
	pip_dl=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
		--platform manylinux2014_x86_64 -d .whl)
	# One version of each package: two of one name stop the whole install there.
	for f in .whl/diffusers-*.whl; do
		if [ -e "$f" ] && [[ $f != .whl/diffusers-$DIFFUSERS_VERSION-* ]]; then rm -v "$f"; fi
	done
	"${pip_dl[@]}" "diffusers==$DIFFUSERS_VERSION"
	meta=$(unzip -p .whl/diffusers-"$DIFFUSERS_VERSION"-*.whl '*/METADATA')
	echo "diffusers requires:"
	grep '^Requires-Dist' <<<"$meta" | grep -v 'extra ==' | sed 's/^/  /'
	# Names only (lower case, '_' and '.' as '-'), without extras' requirements.
	for req in $(grep '^Requires-Dist' <<<"$meta" | grep -v 'extra ==' |
		sed -E 's/^Requires-Dist: *([A-Za-z0-9._-]+).*/\1/' | normalize); do
		if [[ " $PRESENT $NOT_NEEDED " == *" $req "* ]]; then
			continue
		fi
		echo "  not on the GPU machine: $req -> downloading"
		"${pip_dl[@]}" "$req"
	done
	# Check the one-version rule across everything in .whl/ (others may have put wheels
	# there too).
	dups=$(for f in .whl/*.whl; do basename "$f" | cut -d- -f1 | normalize; done | sort | uniq -d)
	if [ -n "$dups" ]; then
		echo "error: several wheels of: $dups (keep one of each in .whl/)" >&2
		exit 1
	fi
	ls -l .whl
fi

if ((build)); then
	echo "=== cargo build --release ==="
	cargo build --release
fi

# What the GPU run's output should be matched against: the copy there may have no .git.
if [ -x target/release/ras ]; then
	commit=$(git rev-parse --short HEAD)
	git diff --quiet HEAD || commit="$commit (+ uncommitted changes)"
	echo "target/release/ras: sha256 $(sha256sum target/release/ras | cut -c1-16), tree at commit $commit" \
		"(the binary is as new as its last build)"
fi

# The device call sends the tree (tracked and untracked-not-ignored files) plus the carried
# paths, 64 MiB in all.
# (|| true: du exits non-zero over a path that is missing, e.g. the binary before a build.)
tree_kib=$(git ls-files -co --exclude-standard -z | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1 || true)
carried_kib=$(du -ck .gl .whl target/release/ras 2>/dev/null | tail -1 | cut -f1 || true)
echo "to send: tree $((${tree_kib:-0} / 1024)) MiB + carried $((${carried_kib:-0} / 1024)) MiB (limit 64 MiB)"
[ -x target/release/ras ] || echo "warning: no target/release/ras yet (run without --no-build)"
echo "then on the GPU machine: bash bench/gpu-check.sh   (carry: .gl .whl target/release/ras)"
