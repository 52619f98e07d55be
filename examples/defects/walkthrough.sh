#!/usr/bin/env bash
# The walk-through of docs/cloud.md, end to end on this machine: a service, a scheduler and one
# agent on a training tile; a customer uploads images and code, trains, is preempted by another
# company's urgent job, resumes, downloads the model and reads the usage. Run from the repo root
# after `make test` (or `make .venv/.installed`):  bash examples/defects/walkthrough.sh
set -euo pipefail
ROOT=$(pwd)
D="$ROOT/.venv/bin/dojo" PY="$ROOT/.venv/bin/python"
WORK=$(mktemp -d /tmp/dojo-walkthrough.XXXX)
cd "$WORK"
PORT=${PORT:-8123}
export DOJO_DB="sqlite:///$WORK/svc/dojo.db" DOJO_URL="http://127.0.0.1:$PORT"
mkdir -p svc
token() { "$PY" -c "import json,sys; print(json.load(sys.stdin)['token'])"; }
field() { "$PY" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
"$D" admin tenant create acme --data-dir svc --json | token > acme.token
"$D" admin tenant create rival --data-dir svc --json | token > rival.token
"$D" serve --data-dir svc --port "$PORT" > serve.log 2>&1 & echo $! > pids
"$D" sched run --data-dir svc --system tile --interval 1 > sched.log 2>&1 & echo $! >> pids
"$D" agent --data-dir svc --system tile --max-nproc 2 --heartbeat-s 1 > agent.log 2>&1 & echo $! >> pids
trap 'kill $(cat "$WORK/pids") 2>/dev/null || true' EXIT
sleep 4
export DOJO_TOKEN=$(cat acme.token)
set -x
"$PY" "$ROOT/examples/defects/make_data.py" --out images --per-class 200
DS=$("$D" cloud datasets create defects --kind files)
"$D" cloud datasets upload "$DS" images --no-progress
JOB=$("$D" submit script --code "$ROOT/examples/defects" --entry train.py --dataset "$DS" \
      --tiles 1 --arg=--epochs --arg=40)
set +x
until [ "$("$D" jobs show "$JOB" | field "['metric_rows']")" -gt 30 ]; do sleep 1; done
echo "# rival submits an urgent job on the whole tile: the scheduler preempts $JOB"
DOJO_TOKEN=$(cat rival.token) "$D" submit eval --set policy=naive --set decisions=2000 \
  --tiles 1 --priority 10
until [[ "$("$D" jobs show "$JOB" | field "['status']")" =~ ^(succeeded|failed)$ ]]; do sleep 2; done
set -x
"$D" jobs show "$JOB" | field "['status']"
"$D" jobs logs "$JOB" | grep -E "attempt|SIGTERM|resumed|done|stored"
"$D" cloud models list --job "$JOB"
"$D" cloud models download "$("$D" cloud models list --job "$JOB" --json | field "[0]['id']")"
curl -s -H "Authorization: Bearer $DOJO_TOKEN" "$DOJO_URL/v1/usage" | "$PY" -m json.tool
"$D" admin invoice acme --month "$(date -u +%Y-%m)" --data-dir svc
set +x
echo "everything is under $WORK"
