#!/bin/bash
# Run a command as if on a slower machine: its whole process tree capped to CORES cores, throttled in 1-ms
# periods (a cgroup's CPU bandwidth limit). Why: the shared VM this project is measured on runs in a fast or
# a slow phase by chance, and serve's ratio to the network alone matters most where the network alone is below
# 25 fps; a load process spinning beside the benchmark (the old emulation) fights the scheduler and adds its
# own jitter, while a quota slows every thread of the benchmark alike, the network alone included.
#
#   bench/slow_cpu.sh 1.2 .venv/bin/python bench/latency.py --engines fp32   # fp32 network alone ~19-21 fps
#
# Needs root and the cgroup v1 "cpu" controller (/sys/fs/cgroup/cpu) or cgroup v2 with "cpu" enabled.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 CORES COMMAND [ARGS...]" >&2; exit 2; fi
quota=$(awk -v c="$1" 'BEGIN { printf "%d", c * 1000 }'); shift
if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then  # cgroup v1
  group=/sys/fs/cgroup/cpu/s2l_slow_cpu
  mkdir -p "$group"
  echo 1000 > "$group/cpu.cfs_period_us"
  echo "$quota" > "$group/cpu.cfs_quota_us"
elif [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then  # cgroup v2
  group=/sys/fs/cgroup/s2l_slow_cpu
  mkdir -p "$group"
  echo "$quota 1000" > "$group/cpu.max"
else
  echo "$0: no writable cgroup cpu controller here (needs root)" >&2; exit 1
fi
echo $$ > "$group/cgroup.procs"
exec "$@"
