# `opencode-worker run` of one job, interleaved between binaries: wall time per run and the
# job's own total_ms, beside python's spawn of /bin/true. Usage: python3 run-ab.py N BIN...
# (RUN_ARGS="--set isolation.profile=\"none\"" for other settings)
import subprocess, sys, time, os, re, json
n=int(sys.argv[1]); bins=sys.argv[2:]
extra=os.environ.get("RUN_ARGS","").split()
res={b:[] for b in bins}; job={b:[] for b in bins}; fl=[]
for _ in range(n):
    t=time.perf_counter(); subprocess.run(["/bin/true"]); fl.append(time.perf_counter()-t)
    for b in bins:
        t=time.perf_counter(); r=subprocess.run([b,"run"]+extra+["--json","--","/bin/true"],capture_output=True,text=True); res[b].append(time.perf_counter()-t)
        assert r.returncode==0, r.stderr
        job[b].append(json.loads(r.stdout)["metrics"]["total_ms"])
q=lambda v,p: sorted(v)[int(len(v)*p)]
print(f"load {os.getloadavg()[0]:.2f}; floor (python subprocess /bin/true) p50 {q(fl,.5)*1e3:.2f} ms")
for b in bins:
    print(f"{os.path.basename(b):12} run wall p50 {q(res[b],.5)*1e3:.1f} p90 {q(res[b],.9)*1e3:.1f} ms; job total_ms p50 {q(job[b],.5):.2f}")
