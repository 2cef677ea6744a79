# Minor page faults per job, split between the worker itself and its reaped children (the
# relay, the namespace's init, the job and what it exec'd), read from /proc/<worker>/stat.
# Usage: python3 faults.py BIN N   (SPEC and OCW_SET as in ab.py)
import json, os, subprocess, sys
b, n = sys.argv[1], int(sys.argv[2])
spec = json.loads(os.environ.get("SPEC", '{"argv": ["/bin/true"], "wait_ms": 60000}'))
p = subprocess.Popen([b, "serve", "--set", "session.base_dir=/tmp"] + sum((["--set", x] for x in os.environ.get("OCW_SET", "").split() if x), []), stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
i = 0
def call(m, params):
    global i; i += 1
    p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": params}) + "\n"); p.stdin.flush()
    return json.loads(p.stdout.readline())
def faults():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[7]), int(f[8])  # minflt, cminflt
def status():
    keep = ("VmRSS", "RssAnon", "RssFile", "VmPTE", "Threads")
    return " ".join(l.replace("\t", "").replace("  ", "") for l in open(f"/proc/{p.pid}/status").read().splitlines() if l.startswith(keep))
call("initialize", {})
for _ in range(20): call("worker_dispatch_job", spec)
a = faults()
for _ in range(n):
    r = call("worker_dispatch_job", spec); assert r["result"]["status"] == "finished", r
z = faults()
maps = len(open(f"/proc/{p.pid}/maps").read().splitlines())
print(f"{os.path.basename(b)}: minor faults per job: worker {(z[0]-a[0])/n:.0f}, children {(z[1]-a[1])/n:.0f}; "
      f"{status()} maps:{maps}; load {os.getloadavg()[0]:.2f}")
p.stdin.close(); p.wait()
