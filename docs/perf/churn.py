# Session-dir churn without the worker: make a session root and its four dirs, remove them
# 8 sessions later, as the worker's janitor does. Compare a plain dir with one `chattr +T`.
# Usage: python3 churn.py DIR N
import os, time, sys, collections
base=sys.argv[1]; n=int(sys.argv[2])
os.makedirs(base, exist_ok=True)
live=collections.deque(); mk=0.0; rm=0.0
t0=time.perf_counter()
for i in range(n):
    r=f"{base}/s{i}"
    t=time.perf_counter()
    os.mkdir(r, 0o700)
    for s in ("work","output","tmp","home"): os.mkdir(f"{r}/{s}", 0o700)
    mk+=time.perf_counter()-t
    live.append(r)
    if len(live)>8:
        d=live.popleft(); t=time.perf_counter()
        for s in ("work","output","tmp","home"): os.rmdir(f"{d}/{s}")
        os.rmdir(d); rm+=time.perf_counter()-t
wall=time.perf_counter()-t0
print(f"{base}: {n} sessions, mkdir x5 {mk/n*1e3:.3f} ms, rmdir x5 {rm/n*1e3:.3f} ms per session, {n/wall:.0f}/s; cpu {sum(os.times()[:2])/n*1e3:.3f} ms/session")
for d in live:
    for s in ("work","output","tmp","home"): os.rmdir(f"{d}/{s}")
    os.rmdir(d)
