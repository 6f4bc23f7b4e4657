"""Developer tool: where the time of one GPU registration goes (torch profiler), and Dice/seconds per config."""
import json
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, "benchmarks")
from registration import phantom_pairs  # noqa: E402

from cranialkit.registration import RegistrationConfig, register, summarize  # noqa: E402

dev = torch.device("cuda")
s256, t256 = phantom_pairs(256, 2)
register(s256[0], t256[0], RegistrationConfig(), device=dev)  # warm-up
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    t0 = time.perf_counter()
    register(s256[0], t256[0], RegistrationConfig(), device=dev)
    torch.cuda.synchronize()
    print("profiled 256 default s", round(time.perf_counter() - t0, 2), flush=True)
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=40))
for r in (128, 256):
    s, t = phantom_pairs(r, 2) if r == 128 else (s256, t256)
    for name, cfg in [("default", RegistrationConfig()), ("finest10", RegistrationConfig(iterations=(80, 60, 40, 10))),
                      ("finest15", RegistrationConfig(iterations=(80, 60, 40, 15)))]:
        for batch in (1, 2) if name == 'default' else (1,):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            rows = []
            for i in range(0, 2, batch):
                res = register(s[i:i + batch], t[i:i + batch], cfg, device=dev)
                rows += summarize(res, s[i:i + batch], t[i:i + batch])
            torch.cuda.synchronize()
            per_pair = (time.perf_counter() - t0) / 2
            print(json.dumps({"res": r, "cfg": name, "batch": batch, "s_per_pair_incl_summary": round(per_pair, 3),
                              "register_s_per_pair": round(sum(x["seconds"] for x in rows) / len(rows), 3),
                              "dice": round(sum(x["dice"] for x in rows) / len(rows), 4),
                              "folding": round(sum(x["folding_percent"] for x in rows) / len(rows), 4)}), flush=True)
