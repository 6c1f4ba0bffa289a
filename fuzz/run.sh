#!/bin/sh
# Runs one target (built by `cargo +nightly fuzz build -s none`) for $2
# executions (default 1 M) from corpus/<target>, seeded from
# tests/fuzz_corpus/<target>; crashes land in artifacts/<target>/, the
# log in logs/<target>.log.
set -e
t=$1; runs=${2:-1000000}
mkdir -p corpus/$t artifacts/$t logs
[ -n "$(ls corpus/$t)" ] || cp ../tests/fuzz_corpus/$t/* corpus/$t/
start=$(date +%s)
TMPDIR=/dev/shm target/x86_64-unknown-linux-gnu/release/$t -runs=$runs -jobs=1 \
  -print_final_stats=1 -artifact_prefix=artifacts/$t/ corpus/$t > /dev/null 2>&1 || true
mv fuzz-0.log logs/$t.log
echo "$t: $(( $(date +%s) - start )) s wall, corpus $(ls corpus/$t | wc -l) files" | tee -a logs/$t.log
