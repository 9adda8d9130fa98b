#!/usr/bin/env bash
# Long-run memory check of the DCGAN demo; not part of CTest.
#
# Runs examples/dcgan_fashion_mnist for several epochs. After each it writes
# a grid, a checkpoint and, unless --no-metrics, the scores. The script
# samples the process's VmRSS and VmHWM from /proc/<pid>/status once per
# second and prints a table of epoch against memory. It fails when the
# memory kept between epochs, or the final peak (VmHWM), grows by more than
# the slack past its value after epoch 1.
#
# Usage: tests/scripts/soak.sh [demo options...]
#   default options: --epochs 20 --threads 2 --max-seconds 0, which trains
#   on all 60,000 images and scores every epoch (14 minutes on 2 idle cores)
#   --out defaults to a fresh folder under the work folder; a run that
#   resumes from an existing --out counts the epochs already in its log.
# Environment:
#   DEMO        demo binary; when unset, the script builds it with
#               g++ -O2 into the work folder
#   SOAK_WORK   work folder (default: ${TMPDIR:-/tmp}/advgan-soak)
#   SOAK_SLACK_KIB  allowed growth in KiB (default 4096), for allocator noise
#   SOAK_SAMPLES    a samples file of an earlier run: print its table and
#               check it again, without running the demo
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${SOAK_WORK:-${TMPDIR:-/tmp}/advgan-soak}
slack=${SOAK_SLACK_KIB:-4096}
mkdir -p "$work"

# The table gives three figures per epoch k. "RSS max" is the largest VmRSS
# sampled while epoch k ran, in the samples with k - 1 epochs done. "RSS
# kept" is the smallest VmRSS sampled after it, while the next epoch runs.
# "HWM after" is the VmHWM of the first sample after it.
# The smallest value is the memory kept between epochs. A single sample can
# catch buffers that are being freed, so it does not define that value.
# Two figures must stay within the slack of their values after epoch 1: the
# memory kept between epochs, up to the last epoch that another followed,
# and the peak of the whole run, the final VmHWM.
analyze() {
  awk -v slack="$slack" '
    NR == 1 { next }
    {
      done = $2
      running = done + 1
      if (!(running in peak) || $3 > peak[running]) peak[running] = $3
      if (done >= 1 && (!(done in low) || $3 < low[done])) low[done] = $3
      if (done >= 1 && !(done in after_hwm)) { after_time[done] = $1; after_hwm[done] = $4 }
      if (running > epochs) epochs = running
      if (done > last_done) last_done = done
      final_hwm = $4
    }
    END {
      if (last_done < 2) { print "soak: fewer than 2 epochs ran; nothing to compare"; exit 1 }
      printf "%5s %14s %8s %18s %16s\n", "epoch", "RSS max (MiB)", "seconds", "RSS kept (MiB)", "HWM after (MiB)"
      rss_growth = 0
      for (e = 1; e <= epochs; ++e) {
        if (e in low) {
          printf "%5d %14.1f %8d %18.1f %16.1f\n", e, peak[e] / 1024, after_time[e], low[e] / 1024, after_hwm[e] / 1024
          if (e < last_done && low[e] - low[1] > rss_growth) rss_growth = low[e] - low[1]
        } else
          printf "%5d %14.1f %8s %18s %16s\n", e, peak[e] / 1024, "-", "-", "-"
      }
      hwm_growth = final_hwm - after_hwm[1]
      printf "growth after epoch 1: RSS kept between epochs %+d KiB, final HWM %+d KiB (slack %d KiB)\n", rss_growth, hwm_growth, slack
      if (rss_growth > slack || hwm_growth > slack) { print "soak: memory grew after epoch 1"; exit 1 }
      print "soak: no memory growth after epoch 1"
    }' "$1"
}

if [[ -n "${SOAK_SAMPLES:-}" ]]; then
  analyze "$SOAK_SAMPLES"
  exit
fi

if [[ -z "${DEMO:-}" ]]; then
  DEMO=$work/dcgan_fashion_mnist
  echo "soak: building $DEMO with g++ -O2"
  g++ -std=c++20 -O2 -fopenmp -I"$root/include" "$root/examples/dcgan_fashion_mnist.cpp" \
    -o "$DEMO" -lopenblas -llapack -lz -lpng
fi

args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
  args=(--epochs 20 --threads 2 --max-seconds 0)
fi
out=
# An epoch ends with its "epoch_end" record, or with its scores record when
# the scores are on. The scores allocate their own buffers, and the baseline
# after epoch 1 must include them.
epoch_record='"epoch_end"'
for ((i = 0; i < ${#args[@]}; ++i)); do
  if [[ "${args[i]}" == --out && $((i + 1)) -lt ${#args[@]} ]]; then out=${args[i + 1]}; fi
done
if [[ " ${args[*]} " != *" --no-metrics "* ]]; then epoch_record='"fid"'; fi
if [[ -z "$out" ]]; then
  out=$work/run-$$
  rm -rf "$out"
  args+=(--out "$out")
fi

log=$work/demo-$$.log
samples=$work/samples-$$.tsv
echo "soak: $DEMO ${args[*]}"
start=$(date +%s)
"$DEMO" "${args[@]}" >"$log" 2>&1 &
pid=$!

# One line per second: seconds since start, epochs finished, VmRSS and
# VmHWM in KiB. The demo appends an "epoch_end" record to metrics.jsonl, and
# flushes it, after each epoch's checkpoint, then a record with the scores.
printf 'seconds\tepochs_done\tvm_rss_kib\tvm_hwm_kib\n' >"$samples"
# The count is read before the memory, so a sample that counts an epoch as
# done was taken after that epoch's last record.
while kill -0 "$pid" 2>/dev/null; do
  done_count=$(grep -c "$epoch_record" "$out/metrics.jsonl" 2>/dev/null || true)
  done_count=${done_count:-0}
  status=$(cat "/proc/$pid/status" 2>/dev/null || true)
  rss=$(awk '/^VmRSS:/ {print $2}' <<<"$status")
  hwm=$(awk '/^VmHWM:/ {print $2}' <<<"$status")
  if [[ -n "$rss" && -n "$hwm" ]]; then
    printf '%s\t%s\t%s\t%s\n' $(($(date +%s) - start)) "$done_count" "$rss" "$hwm" >>"$samples"
  fi
  sleep 1
done
demo_status=0
wait "$pid" || demo_status=$?
if [[ $demo_status -ne 0 ]]; then
  echo "soak: the demo failed with status $demo_status:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi

analyze "$samples"
echo "soak: samples in $samples, demo output in $log"
