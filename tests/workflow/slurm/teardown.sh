#!/usr/bin/env bash
# Stops what tests/workflow/slurm/setup.sh STATE_DIR started, and nothing else: first the jobs still queued
# or running on that cluster, then each daemon by the pid setup.sh recorded in STATE_DIR/pids
# (newest first: slurmd, slurmctld, slurmdbd, mariadbd, munged), checking that the pid still
# belongs to that program; SIGTERM, then SIGKILL after 20 s; and the link setup.sh made to its
# slurm.conf. `--remove` deletes STATE_DIR after.
set -uo pipefail

STATE=${1:?usage: teardown.sh STATE_DIR [--remove]}
REMOVE=${2:-}
PIDS="$STATE/pids"

if [ -f "$PIDS" ]; then
    if [ -f "$STATE/slurm.conf" ] && grep -q '^slurmctld ' "$PIDS"; then
        export SLURM_CONF="$STATE/slurm.conf"
        jobs=$(timeout 10 squeue -h -o %i 2>/dev/null)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs 2>/dev/null
            for _ in $(seq 50); do
                [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    tac "$PIDS" | while read -r name pid; do
        [ -n "$pid" ] && [ -d "/proc/$pid" ] || continue
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
            echo "teardown: pid $pid is no longer $name; left alone" >&2
            continue
        fi
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do
            [ -d "/proc/$pid" ] || break
            # a zombie (our own child) counts as stopped
            [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
            sleep 0.2
        done
        if [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
            echo "teardown: $name ($pid) ignored SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    mv "$PIDS" "$PIDS.stopped"
fi

# the link setup.sh made at SLURM's default configuration path, if it still points here
if [ -f "$STATE/links" ]; then
    while read -r link; do
        [ "$(readlink "$link" 2>/dev/null)" = "$STATE/slurm.conf" ] && rm -f "$link"
    done <"$STATE/links"
    rm -f "$STATE/links"
fi

if [ "$REMOVE" = --remove ]; then
    rm -rf "$STATE"
fi
exit 0
