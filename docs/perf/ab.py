import json, subprocess, sys, time, os
n = int(sys.argv[1]); bins = sys.argv[2:]
class W:
    def __init__(s, b):
        s.p = subprocess.Popen([b, "serve", "--set", "session.base_dir=/tmp", "--set", "worker.max_concurrent_sessions=8"] + sum((["--set", x] for x in os.environ.get("OCW_SET", "").split() if x), []), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1); s.i = 0
    def call(s, m, params):
        s.i += 1; s.p.stdin.write(json.dumps({"jsonrpc":"2.0","id":s.i,"method":m,"params":params})+"\n"); s.p.stdin.flush()
        return json.loads(s.p.stdout.readline())
ws = [W(b) for b in bins]
spec = json.loads(os.environ.get("SPEC", '{"argv": ["/bin/true"], "wait_ms": 60000}'))
for w in ws:
    w.call("initialize", {})
    for _ in range(30): w.call("worker_dispatch_job", spec)
ts = [[] for _ in ws]; fl = []
for _ in range(n):
    t = time.perf_counter(); subprocess.run(["/bin/true"]); fl.append(time.perf_counter()-t)
    for k, w in enumerate(ws):
        t = time.perf_counter(); r = w.call("worker_dispatch_job", spec); ts[k].append(time.perf_counter()-t)
        assert r["result"]["status"] == "finished", r
q = lambda v, p: sorted(v)[int(len(v)*p)]*1e3
print(f"load {os.getloadavg()[0]:.2f}; python subprocess /bin/true p50 {q(fl,.5):.3f} p90 {q(fl,.9):.3f}")
for b, v, w in zip(bins, ts, ws):
    m = w.call("worker_get_metrics", {})["result"]["latency_ms"]
    phases = " ".join(f"{k}={m[k]['p50']:.3f}" for k in ["queue","prepare","spawn","execute","collect","destroy","total"] if k in m)
    print(f"{os.path.basename(b):10} p50 {q(v,.5):.3f} p90 {q(v,.9):.3f} p99 {q(v,.99):.3f} ms  ratio-to-py-floor {q(v,.5)/q(fl,.5):.2f} | worker phases p50: {phases}")
    w.p.stdin.close(); w.p.wait()
