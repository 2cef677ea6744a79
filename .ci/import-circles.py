# File-level import graph of src/: an edge A->B when A names a path `crate::x::y` (or
# `super::`/`self::` resolved) that resolves to module file B. Prints the strongly connected
# components with more than one file (import circles).
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else "."
src = os.path.join(root, 'src')
mods = {}  # module path tuple -> file
for d, _, fs in os.walk(src):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(d, f)
        rel = os.path.relpath(p, src)[:-3].split(os.sep)
        if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
        mods[tuple(rel)] = p
def resolve(parts):
    # longest prefix that is a module file
    for n in range(len(parts), 0, -1):
        if tuple(parts[:n]) in mods: return tuple(parts[:n])
    return None
edges = {m: set() for m in mods}
pat = re.compile(r'\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)')
grp = re.compile(r'\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^}]*)\}', re.S)
for m, p in mods.items():
    text = open(p).read()
    # drop #[cfg(test)] mod tests blocks roughly: keep whole text (tests count as imports too)
    here = list(m)
    isdir = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
    base_self = here if isdir else here[:-1]  # module whose children are siblings
    def absolute(kind, rest):
        if kind == 'crate': return rest
        if kind == 'self': return here + rest
        # super: parent of this module
        return here[:-1] + rest
    hits = []
    for k, r in pat.findall(text):
        hits.append(absolute(k, r.split('::')[1:]))
    for k, r, inner in grp.findall(text):
        prefix = absolute(k, [x for x in r.split('::') if x])
        for item in inner.split(','):
            item = item.strip().split(' as ')[0].strip()
            if item and item != 'self': hits.append(prefix + item.split('::'))
            elif item == 'self': hits.append(prefix)
    for parts in hits:
        t = resolve(parts)
        if t is not None and t != m and t != ():
            # an edge to a parent module that is only a `mod` declaration container is still an edge
            edges[m].add(t)
# Tarjan
sys.setrecursionlimit(100000)
index = {}; low = {}; stack = []; on = set(); comps = []; i = [0]
def sc(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v: break
        comps.append(c)
for v in edges:
    if v not in index: sc(v)
big = [c for c in comps if len(c) > 1]
print(f"import graph of src/: {len(mods)} files, {sum(len(e) for e in edges.values())} edges, {len(big)} circles")
for c in sorted(big, key=len, reverse=True):
    print(len(c), sorted('/'.join(x) for x in c))
sys.exit(1 if big else 0)
