import json, subprocess, sys, time, os
binary = sys.argv[1]; n = int(sys.argv[2]); extra = sys.argv[3:]
args = [binary, "serve", "--set", "session.base_dir=/tmp", "--set", "worker.max_concurrent_sessions=8"]
for e in extra: args += ["--set", e]
p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
i = 0
def call(m, params):
    global i; i += 1
    p.stdin.write(json.dumps({"jsonrpc":"2.0","id":i,"method":m,"params":params})+"\n"); p.stdin.flush()
    return json.loads(p.stdout.readline())
call("initialize", {})
spec = {"argv": ["/bin/true"], "wait_ms": 60000}
for _ in range(20): call("worker_dispatch_job", spec)
if os.environ.get("MARK"): open(os.environ["MARK"], "w").write(str(p.pid))
ts = []
for _ in range(n):
    t = time.perf_counter(); r = call("worker_dispatch_job", spec); ts.append(time.perf_counter()-t)
    assert r["result"]["status"] == "finished", r
ts.sort()
m = call("worker_get_metrics", {})
print("p50 %.3f ms p90 %.3f" % (ts[len(ts)//2]*1e3, ts[int(len(ts)*.9)]*1e3), file=sys.stderr)
print(json.dumps(m["result"], indent=1))
p.stdin.close(); p.wait()
