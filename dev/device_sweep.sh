#!/bin/bash
# Developer tool: run tuning jobs in parallel on the device (16 cores + GPU); results in $OUT/gen.jsonl,
# $OUT/recon.jsonl and $OUT/logs.txt (keep the outputs to a few files: the device returns only a handful).
# Edit the job list.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p /tmp/logs
# Make the shared phantom data once, before the jobs read it side by side.
python3 -c "
from cranialkit.reconstruction.data import load_splits
from cranialkit.preprocessing import stack_cases
from cranialkit.generative.data import phantom_pairs
s = load_splits('phantom', 20, 64, 0, 0); stack_cases(s['train'], (64,) * 3); stack_cases(s['val'], (64,) * 3)
phantom_pairs(n_subjects=10, resolution=32, seed=0); phantom_pairs(n_subjects=20, resolution=32, seed=0)
" || exit
G() { timeout 440 python3 dev/sweep_generators.py "$1" $OUT/gen.jsonl > /tmp/logs/$2.txt 2>&1 & }
R() { timeout 440 python3 dev/sweep_reconstruction.py "$1" $OUT/recon.jsonl > /tmp/logs/$2.txt 2>&1 & }
F='"channels":[8,16,32,64,128]'
R '{"tag":"b0","steps":6000,"seed":1,"num_res_units":2}' b0
R '{"tag":"b1","steps":6000,"seed":2,"num_res_units":2}' b1
R '{"tag":"b2","steps":6000,"seed":0,"num_res_units":2,'"$F"'}' b2
R '{"tag":"b3","steps":6000,"seed":1,"num_res_units":2,'"$F"'}' b3
R '{"tag":"b4","steps":6000,"seed":2,"num_res_units":2,'"$F"'}' b4
R '{"tag":"b5","steps":6000,"seed":2,'"$F"'}' b5
R '{"tag":"b6","steps":5000,"seed":0,"num_res_units":2,'"$F"'}' b6
R '{"tag":"b7","steps":5000,"seed":0,"num_res_units":2}' b7
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv; uptime
wait
tail -n 3 /tmp/logs/* > $OUT/logs.txt
wc -l $OUT/*.jsonl
