#!/bin/bash
# Developer tool: run tuning jobs in parallel on the device (16 cores + GPU); results in $OUT/gen.jsonl,
# $OUT/recon.jsonl and $OUT/logs.txt (keep the outputs to a few files: the device returns only a handful).
# Edit the job list.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p /tmp/logs
G() { timeout 530 python3 dev/sweep_generators.py "$1" $OUT/gen.jsonl > /tmp/logs/$2.txt 2>&1 & }
R() { timeout 530 python3 dev/sweep_reconstruction.py "$1" $OUT/recon.jsonl > /tmp/logs/$2.txt 2>&1 & }
R '{"tag":"r0"}' r0
R '{"tag":"r1","loss":"dice_bce"}' r1
R '{"tag":"r2","channels":[16,32,64,128]}' r2
R '{"tag":"r3","channels":[16,32,64,128],"loss":"dice_bce"}' r3
R '{"tag":"r4","channels":[8,16,32,64,128]}' r4
R '{"tag":"r5","channels":[16,32,64,128],"num_res_units":2}' r5
W='"stages":[300,600,900],"lr":1e-3'
G '{"tag":"g1","name":"wgan_gp",'"$W"',"config":{"base_channels":16}}' g1
L='"n_subjects":20,"lr":1e-3,"ae_steps":400'
A='"autoencoder_lr":3e-3,"autoencoder":{"levels":2}'
G '{"tag":"l1","name":"ldm_vqvae",'"$L"',"stages":[600,1200,2000],"config":{'"$A"',"prediction_type":"epsilon"}}' l1
G '{"tag":"l2","name":"ldm_vqvae",'"$L"',"stages":[600,1200,2000],"config":{'"$A"',"prediction_type":"sample"}}' l2
G '{"tag":"l3","name":"ldm_vqvae",'"$L"',"stages":[600],"config":{'"$A"'},"compare":[["ddpm",1000],["ddim",50],["ddim",25],["ddim",10]]}' l3
G '{"tag":"l4","name":"ldm_vae",'"$L"',"stages":[600],"config":{'"$A"'},"compare":[["ddpm",1000],["ddim",50],["ddim",25],["ddim",10]]}' l4
sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv; uptime
wait
tail -n 4 /tmp/logs/* > $OUT/logs.txt
wc -l $OUT/*.jsonl
