#!/usr/bin/env bash
# A real Slurm in the tests (issue 19): Debian's slurm-wlm (slurmctld, slurmd) with munge, configured for one
# node on this machine and started here, as root (as CI runs), all state in a temporary folder and on ports
# of its own. A 4-run sweep of a tiny backbone is written with `ladder sweep --emit slurm`, submitted with
# `sbatch --wait` (a job array throttled with %2), and its stores are merged with `ladder runs import`; then
# one data-parallel run trains on 2 srun tasks (ranks from Slurm's variables);
# every run must be there, finished, with its metrics, evaluations and checkpoint. Importing again imports
# nothing.
#
#   bash tests/slurm/test_slurm_sweep.sh PATH/TO/ladder
#
# Exit 0: passed; 1: failed; 77 (CTest's SKIP_RETURN_CODE): Slurm could not be installed or started here
# (not root, no apt, the daemons would not come up), with the reason on stderr. The daemons are stopped on
# every exit (trap). docs/STORE.md ("Importing stores") and /work/shared/docs/SLURM-NOTES.md say why each
# setting is here.
set -uo pipefail

LADDER=${1:?usage: test_slurm_sweep.sh PATH/TO/ladder}
LADDER=$(readlink -f "$LADDER")
WAIT_SECONDS=${LADDER_SLURM_WAIT_SECONDS:-150}

log() { echo "test_slurm_sweep: $*"; }
skip() {
    echo "SKIPPED: test_slurm_sweep: $*" >&2
    exit 77
}
fail() {
    echo "FAILED: test_slurm_sweep: $*" >&2
    exit 1
}

[ -x "$LADDER" ] || fail "no ladder program at $LADDER"
[ "$(id -u)" = 0 ] || skip "needs root to install and start slurmctld, slurmd and munged (CI runs as root)"

# ---- Install ------------------------------------------------------------------------------------------
have_slurm() { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; } >/dev/null
if ! have_slurm; then
    command -v apt-get >/dev/null || skip "slurm-wlm and munge are missing and there is no apt-get to install them"
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -q -o DPkg::Lock::Timeout=120 --no-install-recommends slurm-wlm munge; }
    if ! apt_install >/tmp/test_slurm_apt.log 2>&1; then
        apt-get update -q -o DPkg::Lock::Timeout=120 >>/tmp/test_slurm_apt.log 2>&1
        apt_install >>/tmp/test_slurm_apt.log 2>&1 \
            || { tail -5 /tmp/test_slurm_apt.log >&2; skip "apt-get could not install slurm-wlm and munge (log: /tmp/test_slurm_apt.log)"; }
    fi
    have_slurm || skip "slurm-wlm and munge installed, but slurmctld, slurmd, sbatch or munged is not on PATH"
fi

# ---- A private munged, slurmctld and slurmd ---------------------------------------------------------------
T=$(mktemp -d /tmp/test_slurm_sweep.XXXXXX)
chmod 755 "$T"
MUNGE_PID=""
CTLD_PID=""
SLURMD_PID=""
stop_daemons() {
    # By their pids, each once; slurmd first (it reports to slurmctld), munged last.
    for pidfile in "$T/slurmd.pid" "$T/slurmctld.pid"; do
        [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
    done
    [ -n "$MUNGE_PID" ] && kill "$MUNGE_PID" 2>/dev/null
    for _ in $(seq 50); do
        alive=0
        for pidfile in "$T/slurmd.pid" "$T/slurmctld.pid"; do
            [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && alive=1
        done
        [ -n "$MUNGE_PID" ] && kill -0 "$MUNGE_PID" 2>/dev/null && alive=1
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
}
JOB=""
on_exit() {
    rc=$?
    # A job still queued or running (a failure, a timeout) is cancelled before the daemons go: slurmd's
    # steps would outlive it.
    if [ -n "$JOB" ] && [ -n "$(squeue -h -j "$JOB" -o %i 2>/dev/null)" ]; then
        scancel "$JOB" 2>/dev/null
        for _ in $(seq 50); do
            [ -z "$(squeue -h -j "$JOB" -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    stop_daemons
    if [ "$rc" = 1 ]; then
        for f in "$T"/slurmctld.log "$T"/slurmd.log "$T"/job/logs/*.out; do
            [ -f "$f" ] && { echo "---- $f (last lines)"; tail -15 "$f"; } >&2
        done
        log "kept $T for a look"
    else
        rm -rf -- "$T"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 1' INT TERM

# munged with a socket, key and pid file of its own (a system munged may be running, or none).
getent passwd munge >/dev/null || skip "no munge user (the munge package makes it)"
mkdir -p "$T/munge"
if [ -r /etc/munge/munge.key ]; then
    cp /etc/munge/munge.key "$T/munge/munge.key"
else
    dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
fi
chown -R munge:munge "$T/munge"
chmod 700 "$T/munge"
chmod 400 "$T/munge/munge.key"
MUNGE_SOCKET="$T/munge/munge.socket"
su -s /bin/sh munge -c "/usr/sbin/munged --force --socket=$MUNGE_SOCKET --key-file=$T/munge/munge.key \
    --pid-file=$T/munge/munged.pid --log-file=$T/munge/munged.log --seed-file=$T/munge/munged.seed" \
    || skip "munged would not start: $(tail -2 "$T/munge/munged.log" 2>/dev/null)"
MUNGE_PID=$(cat "$T/munge/munged.pid" 2>/dev/null)
munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET" >/dev/null \
    || skip "munge -n | unmunge fails on the private socket"

# Two free ports for slurmctld and slurmd.
read -r CTLD_PORT SLURMD_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
HOST=$(hostname -s)
# Four CPUs whatever the machine has (SlurmdParameters=config_overrides: slurmd takes the node as
# configured), so that four 1-CPU tasks could run at once and only the array's %2 holds them to two.
CPUS=4
mkdir -p "$T/state" "$T/spool"
export SLURM_CONF="$T/slurm.conf"
cat >"$SLURM_CONF" <<CONF
ClusterName=ladder-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=ladder Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -f "$SLURM_CONF" || skip "slurmctld would not start: $(tail -3 "$T/slurmctld.log" 2>/dev/null)"
slurmd -f "$SLURM_CONF" -N "$HOST" || skip "slurmd would not start: $(tail -3 "$T/slurmd.log" 2>/dev/null)"
state=""
for _ in $(seq 60); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null)
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "$state" = idle ] || skip "the node did not come up idle in 30 s (sinfo: '${state}'): $(tail -3 "$T/slurmd.log")"
log "slurm $(sinfo -V | awk '{print $2}') up: node $HOST idle, $CPUS CPUs (configured), partition ladder, slurmctld port $CTLD_PORT"

# ---- A tiny backbone, a task and a 4-run sweep ---------------------------------------------------------------
cd "$T" || fail "cd $T"
python3 - <<'PY'
import json
fruits = ["apple", "pear", "plum", "grape", "lemon", "mango", "peach", "cherry"]
animals = ["horse", "tiger", "mouse", "camel", "zebra", "otter", "eagle", "shark"]
with open("corpus.txt", "w") as f:
    for i in range(600):
        w = (fruits + animals)[i % 16]
        f.write(f"the {w} is here {i} and it is a {'fruit' if w in fruits else 'animal'}\n")
with open("fruit.jsonl", "w") as f:
    for i in range(40):
        f.write(json.dumps({"text": f"the {fruits[i % 8]} is here {i}", "label": "fruit"}) + "\n")
        f.write(json.dumps({"text": f"the {animals[i % 8]} is here {i}", "label": "animal"}) + "\n")
base = {"backbone": "backbone", "task": {"type": "generic", "path": "fruit.jsonl", "name": "fruit",
        "validation_fraction": 0.2, "test_fraction": 0.2},
        "method": {"method": "full"},
        "training": {"max_steps": 6, "batch_size": 8, "warmup_steps": 1, "learning_rate": 0.01,
                     "max_source_length": 16},
        "device": "cpu", "seed": 0}
sweep = {"base": base, "methods": [{"method": "full"}, {"method": "lora", "rank": 4}], "seeds": [1, 2]}
json.dump(sweep, open("sweep.json", "w"), indent=2)
PY
"$LADDER" pretrain --corpus corpus.txt --out backbone --steps 2 --vocab-size 60 --d-model 16 --d-ff 32 \
    --heads 2 --layers 1 --embedding-init random --threads 1 --batch-size 4 >pretrain.log 2>&1 \
    || { tail -5 pretrain.log >&2; fail "ladder pretrain failed"; }

# The spec's paths are relative: the job runs in this folder (#SBATCH --chdir), wherever sbatch is called.
"$LADDER" sweep --config sweep.json --emit slurm --out "$T/job" --partition ladder --cpus-per-run 1 \
    --time 00:05:00 --max-parallel 2 | tee emit.log || fail "ladder sweep --emit slurm failed"
grep -q '^#SBATCH --array=0-3%2$' job/sweep.sbatch || fail "no '#SBATCH --array=0-3%2' in job/sweep.sbatch"

# ---- Submit, wait, and watch the array's tasks --------------------------------------------------------------
cd / || fail "cd /"
timeout "$WAIT_SECONDS" sbatch --wait "$T/job/sweep.sbatch" >"$T/sbatch.out" 2>&1 &
SBATCH_PID=$!
max_running=0
while kill -0 "$SBATCH_PID" 2>/dev/null; do
    [ -z "$JOB" ] && JOB=$(sed -n 's/^Submitted batch job \([0-9]*\).*/\1/p' "$T/sbatch.out")
    if [ -n "$JOB" ]; then
        running=$(squeue -h -r -j "$JOB" -t RUNNING -o %i 2>/dev/null | wc -l)
        [ "$running" -gt "$max_running" ] && max_running=$running
        line=$(squeue -h -r -j "$JOB" -o '%i:%T' 2>/dev/null | tr '\n' ' ')
        [ -n "$line" ] && [ "$line" != "${last_line:-}" ] && log "squeue: $line"
        last_line=$line
    fi
    sleep 0.5
done
wait "$SBATCH_PID"
sbatch_rc=$?
cat "$T/sbatch.out"
[ "$sbatch_rc" = 124 ] && fail "the job did not end within $WAIT_SECONDS s"
[ "$sbatch_rc" = 0 ] || fail "sbatch --wait exited $sbatch_rc"
log "job $JOB ended; at most $max_running array tasks ran at once (--max-parallel 2)"
[ "$max_running" -le 2 ] || fail "$max_running tasks ran at once, more than %2 allows"
for i in 0 1 2 3; do
    f="$T/job/logs/run-$i.out"
    [ -f "$f" ] || fail "array task $i wrote no log ($f)"
    log "task $i: $(head -1 "$f")"
    log "task $i: $(grep '^sweep: ' "$f" || echo 'no summary line')"
    grep -q '^sweep: 1 finished, 0 skipped, 0 failed' "$f" || fail "array task $i did not finish its run (see $f)"
done

# ---- Import, check every run, import again ------------------------------------------------------------------
"$LADDER" runs import "$T"/job/run-*.sqlite --store "$T/main.sqlite" | tee "$T/import.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail "ladder runs import failed"
[ "$(grep -c '^imported 1 run from ' "$T/import.log")" = 4 ] || fail "not 4 stores of 1 run each imported"
python3 - "$T/main.sqlite" <<'PY' || fail "the imported runs are not all there"
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
runs = con.execute("SELECT id, status, method, seed, checkpoint_file FROM runs ORDER BY id").fetchall()
assert len(runs) == 4, runs
assert sorted((m, s) for _, _, m, s, _ in runs) == [("full", 1), ("full", 2), ("lora", 1), ("lora", 2)], runs
for rid, status, method, seed, checkpoint in runs:
    metrics = con.execute("SELECT count(*) FROM metrics WHERE run_id = ?", (rid,)).fetchone()[0]
    evals = con.execute("SELECT count(*) FROM evaluations WHERE run_id = ?", (rid,)).fetchone()[0]
    assert status == "finished" and metrics == 6 and evals >= 1 and checkpoint, (rid, status, metrics, evals)
    print(f"test_slurm_sweep: run {rid}: {method} seed {seed} {status}, {metrics} metric points, "
          f"{evals} evaluations, checkpoint {checkpoint}")
PY
cd "$T" || fail "cd $T" # the specs' relative paths resolve here, as in the job (--chdir)
for id in 1 2 3 4; do
    "$LADDER" eval --run "$id" --store "$T/main.sqlite" >/dev/null 2>&1 || fail "ladder eval of imported run $id failed"
done
log "ladder eval reads each imported run's checkpoint"
"$LADDER" runs import "$T"/job/run-*.sqlite --store "$T/main.sqlite" | tail -1 | tee "$T/again.log"
grep -q '^runs import: 0 runs imported from 4 of 4 stores .* (4 already present, 0 stores skipped)$' "$T/again.log" \
    || fail "importing again imported something"
# ---- One data-parallel run under srun (docs/SCALING.md): 2 tasks, each rank from SLURM_PROCID and
# SLURM_NTASKS, the rendezvous on the first host of SLURM_JOB_NODELIST; rank 0 alone records the run. ------------
python3 - <<'PY'
import json
spec = json.load(open("sweep.json"))["base"]
spec["method"] = {"method": "lora", "rank": 4}
json.dump(spec, open("dp.json", "w"), indent=2)
PY
timeout "$WAIT_SECONDS" srun --ntasks 2 --cpus-per-task 1 --chdir "$T" "$LADDER" train --config dp.json \
    --store "$T/dp.sqlite" --dist-timeout 60 >"$T/srun.log" 2>&1 \
    || { tail -20 "$T/srun.log" >&2; fail "srun --ntasks 2 ladder train failed"; }
grep -q 'process group: gloo, rank 0 of 2 (slurm)' "$T/srun.log" \
    || { tail -20 "$T/srun.log" >&2; fail "no 'gloo, rank 0 of 2 (slurm)' group in the srun's output"; }
log "srun: $(grep -m1 'process group:' "$T/srun.log")"
python3 - "$T/dp.sqlite" <<'PY' || fail "the srun's data-parallel run is not recorded as expected"
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
runs = con.execute("SELECT id, status FROM runs").fetchall()
assert runs == [(1, "finished")], runs
metrics = con.execute("SELECT count(*) FROM metrics WHERE run_id = 1").fetchone()[0]
line = con.execute("SELECT message FROM logs WHERE message LIKE 'data parallel:%'").fetchone()[0]
assert metrics == 6 and "rank 0 of 2 (slurm)" in line, (metrics, line)
print(f"test_slurm_sweep: srun run 1 finished, {metrics} metric points; {line[:110]}")
PY
log "passed"
