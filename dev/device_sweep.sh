#!/bin/bash
# Developer tool: run tuning jobs in parallel on the device (16 cores + GPU); results in $OUT/gen.jsonl and
# $OUT/recon.txt (keep the outputs to a few files: the device returns only a handful). Edit the job list.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p /tmp/logs /tmp/recon
G() { timeout 540 python3 dev/sweep_generators.py "$1" $OUT/gen.jsonl > /tmp/logs/$2.txt 2>&1 & }
R() { CRANIALKIT_DATA_DIR=/tmp/rq_$1 timeout 540 python3 benchmarks/reconstruction_quality.py --threads 1 --closing-radii 2,1,0 --run-root /tmp/rq_$1/runs ${@:2} > /tmp/recon/$1.json 2> /tmp/logs/recon_$1.txt & }
W="[400,800,1200,1600]"
G '{"tag":"x4","name":"wgan_gp","stages":'$W',"lr":1e-3,"config":{"base_channels":16}}' x4
G '{"tag":"i3b","name":"introvae","stages":[2000,2500],"lr":2e-3,"seed":1,"config":{"warmup_steps":1000,"margin":15,"alpha":0.05}}' i3b
G '{"tag":"i5","name":"introvae","stages":[2000,2500],"lr":2e-3,"config":{"warmup_steps":1500,"margin":15,"alpha":0.05}}' i5
G '{"tag":"s1b","name":"soft_introvae","stages":[2000,2500],"lr":2e-3,"seed":1,"config":{"warmup_steps":1000,"beta_neg":4e-3}}' s1b
L='"n_subjects":20,"stages":[600,1200,2000],"lr":1e-3,"ae_steps":400'
G '{"tag":"m1","name":"ldm_vqvae",'"$L"',"config":{"autoencoder_lr":3e-3,"autoencoder":{"levels":1}}}' m1
G '{"tag":"m2","name":"ldm_vae",'"$L"',"config":{"autoencoder_lr":3e-3,"autoencoder":{"levels":1}}}' m2
G '{"tag":"m3","name":"ldm_vqvae",'"$L"',"config":{"autoencoder_lr":3e-3,"autoencoder":{"levels":2,"num_embeddings":256}}}' m3
R r1 --augment mild --steps 1200
R r2 --augment mild --steps 3000 --val-every 500
R r3 --augment none --steps 3000 --val-every 500
R r4 --augment mild --steps 3000 --val-every 500 --targets complete
R r5 --augment mild --steps 3000 --val-every 500 --lr 1e-3
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv; uptime
wait
cat /tmp/recon/*.json > $OUT/recon.txt; tail -n 5 /tmp/logs/* > $OUT/logs.txt
wc -l $OUT/gen.jsonl
