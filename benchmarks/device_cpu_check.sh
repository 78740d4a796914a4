#!/usr/bin/env bash
# Does psilm's portable llama.cpp build run on another x86 CPU where pip's native build may crash?
# (llama.cpp #20824: a GGML_NATIVE build turns AMX on on Sapphire Rapids and dies in
# ggml_backend_amx_mul_mat.) Manual check, never run by the tests; result and how it was run:
# benchmarks/results/any-cpu/README.md.
#
#   benchmarks/device_cpu_check.sh prepare   # here, with network: fills .devcheck/ (~13 MB)
#   benchmarks/device_cpu_check.sh run       # there, no network needed: writes to $OUT
#
# prepare: llama-cpp-python's sdist (pinned version) slimmed to ~7 MB (no test models, docs, .git,
# GPU backends), wheels of diskcache, scikit-build-core and pathspec, and a tiny random llama GGUF (5 MB,
# Q8_0 attention and Q4_0 feed-forward, all sizes multiples of 32: what ggml's AMX backend takes).
# run: prints the CPU, probes AMX directly (arch_prctl permission, XCR0, one tile instruction),
# builds two wheels from the sdist in parallel (native: -DGGML_NATIVE=ON; psilm: the flags of
# src/psilm/llm/llamacpp_build.py for this CPU), both with -DLLAVA_BUILD=OFF (the multimodal
# library: not on this path, saves build time), then per build decodes a 50-token prompt and 8 new
# tokens in a child process with 16 and 4 threads (a signal shows as a negative rc), and runs
# psilm's own guard (llamacpp_check.ensure_works) on each; then the libraries it loaded, a backtrace
# under cuda-gdb (the device has no gdb), and AMX instructions in libggml-cpu. Summary:
# $OUT/result.json. Builds use /usr/bin/gcc and g++ (DEVCHECK_CC / DEVCHECK_CXX to change).
# Carry .devcheck to the machine (the device tool's `carry`), e.g.
#   DEVCHECK_JOBS=8 DEVCHECK_BUILD_LIMIT_S=220 bash benchmarks/device_cpu_check.sh run
set -u
cd "$(dirname "$0")/.."
D=.devcheck
PY=${PY:-python3}
VERSION=$(sed -n 's/^VERSION = "\(.*\)".*/\1/p' src/psilm/llm/llamacpp_build.py)

if [ "${1:-}" = prepare ]; then
    set -e
    mkdir -p $D/whl /tmp/devcheck-sdist
    grep -qx '/.devcheck/' .git/info/exclude 2>/dev/null || echo /.devcheck/ >> .git/info/exclude
    $PY -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d /tmp/devcheck-sdist
    (cd /tmp/devcheck-sdist && rm -rf "llama_cpp_python-$VERSION" && tar xzf "llama_cpp_python-$VERSION.tar.gz"
     V="llama_cpp_python-$VERSION/vendor/llama.cpp"
     rm -rf "llama_cpp_python-$VERSION"/{.git,examples,docs} $V/{models,docs,benches,tests,tools/ui}
     for b in hexagon opencl sycl cann openvino et webgpu virtgpu metal vulkan cuda; do rm -rf $V/ggml/src/ggml-$b; done
     tar czf "slim.tar.gz" "llama_cpp_python-$VERSION")
    cp "/tmp/devcheck-sdist/slim.tar.gz" "$D/llama_cpp_python-$VERSION.tar.gz"
    $PY -m pip download -q --no-deps --only-binary=:all: -d $D/whl diskcache==5.6.3 scikit-build-core==1.1.2 pathspec==0.12.1
    $PY - "$D/tiny-amx.gguf" <<'EOF'
import sys
import numpy as np
import gguf

path = sys.argv[1]
E, H, FF, L = 512, 8, 1536, 2
rng = np.random.default_rng(0)
toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
toks += ["\u2581"] + list("abcdefghijklmnopqrstuvwxyz") + ["\u2581" + c for c in "abcdefghijklmnopqrstuvwxyz"]
toks += [f"<extra{i}>" for i in range(320 - len(toks))]
V = len(toks)
w = gguf.GGUFWriter(path, "llama")
w.add_name("tiny-random-amx-check")
w.add_context_length(256); w.add_embedding_length(E); w.add_block_count(L)
w.add_feed_forward_length(FF); w.add_head_count(H); w.add_head_count_kv(H)
w.add_rope_dimension_count(E // H); w.add_layer_norm_rms_eps(1e-5); w.add_rope_freq_base(10000.0)
w.add_vocab_size(V); w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
w.add_tokenizer_model("llama"); w.add_token_list(toks)
w.add_token_scores([0.0] * 259 + [-float(i) for i in range(V - 259)])
w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (V - 259))
w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0); w.add_add_bos_token(True)
Q8, Q4 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0

def mat(name, rows, cols, q):
    a = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    w.add_tensor(name, gguf.quants.quantize(a, q), raw_dtype=q)

mat("token_embd.weight", V, E, Q8)
w.add_tensor("output_norm.weight", np.ones(E, np.float32))
mat("output.weight", V, E, Q8)
for i in range(L):
    w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(E, np.float32))
    w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(E, np.float32))
    for t in ("q", "k", "v", "output"):
        mat(f"blk.{i}.attn_{t}.weight", E, E, Q8)
    mat(f"blk.{i}.ffn_gate.weight", FF, E, Q4)
    mat(f"blk.{i}.ffn_up.weight", FF, E, Q4)
    mat(f"blk.{i}.ffn_down.weight", E, FF, Q4)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
EOF
    du -ch $D/* $D/whl/* | tail -1
    exit 0
fi

[ "${1:-}" = run ] || { echo "usage: $0 prepare | run" >&2; exit 2; }
OUT=${OUT:-/tmp/devcheck-out}
W=${DEVCHECK_TMP:-/tmp/devcheck}
mkdir -p "$OUT" "$W"
exec > >(tee "$OUT/run.log") 2>&1
echo "== machine"; date -u; uname -a; cat /proc/version; nproc
lscpu
echo "== cpu flags of interest"
grep -o -w -E 'amx[a-z_0-9]*|avx512[a-z_0-9]*|avx_vnni|hypervisor' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
echo "== tools"; which gcc g++ cc cmake ninja "$PY"; gcc --version | head -1; cmake --version | head -1
$PY -c 'import sys; print(sys.version)'
$PY -m pip show scikit-build-core 2>/dev/null | grep -i ^version
dmesg 2>/dev/null | head -3
echo "== environment the children inherit"; env | grep -E '^(LD_|PYTHON|OMP|KMP|MALLOC|GLIBC|CC|CXX|CFLAGS|CXXFLAGS|LDFLAGS|PATH)=' || true
ls -la /opt/gcc/bin 2>/dev/null | head -8; /opt/gcc/bin/g++ -v 2>&1 | tail -2
# The compilers: the system's gcc/g++ unless DEVCHECK_CC/DEVCHECK_CXX say otherwise. (On the device
# the environment's default, /opt/gcc/bin/g++, linked libraries that each carried their own copy of
# libstdc++'s iostreams, and both builds died in std::ostream at model load: see the README.)
export CC=${DEVCHECK_CC:-/usr/bin/gcc} CXX=${DEVCHECK_CXX:-/usr/bin/g++}
echo "CC=$CC CXX=$CXX"; $CXX --version | head -1
$PY -c 'import sys; print(sys.executable, sys.prefix); print(sorted(m for m in sys.modules if not m.startswith("_"))[:80])'
ls "$($PY -c 'import site; print(site.getsitepackages()[0])')"/*.pth 2>/dev/null | head; ls /etc/ld.so.preload 2>/dev/null && cat /etc/ld.so.preload
echo "== C++ iostream sanity"
printf '#include <sstream>\n#include <iostream>\nint main(){std::stringstream ss; ss << 42u << ", " << 7; std::cout << ss.str() << std::endl;}\n' > "$W/ss.cpp"
g++ -O2 -o "$W/ss" "$W/ss.cpp" && "$W/ss"; echo "stringstream rc=$?"

echo "== AMX probe (arch_prctl permission, XCR0 tile bits, one tile instruction)"
cat > "$W/amx_probe.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <immintrin.h>
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
int main(void) {
    unsigned long long xcr0 = _xgetbv(0);
    printf("xcr0=0x%llx tilecfg(bit17)=%d tiledata(bit18)=%d\n", xcr0, (int)((xcr0 >> 17) & 1), (int)((xcr0 >> 18) & 1));
    long req = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, 18);
    unsigned long long perm = 0;
    long get = syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm);
    printf("arch_prctl(REQ_XCOMP_PERM, XTILEDATA)=%ld get=%ld perm=0x%llx\n", req, get, perm);
    fflush(stdout);
    struct __attribute__((packed)) { unsigned char palette, start; unsigned char res[14];
                                     unsigned short colsb[16]; unsigned char rows[16]; } cfg;
    memset(&cfg, 0, sizeof cfg); cfg.palette = 1; cfg.colsb[0] = 64; cfg.rows[0] = 16;
    static unsigned char buf[1024];
    _tile_loadconfig(&cfg); _tile_zero(0); _tile_stored(0, buf, 64); _tile_release();
    printf("tile instructions ran\n");
    return 0;
}
EOF
if gcc -O1 -mxsave -mamx-tile -o "$W/amx_probe" "$W/amx_probe.c"; then
    "$W/amx_probe"; echo "amx_probe rc=$?"
else echo "amx_probe: did not compile"; fi

echo "== psilm's flags here"
PSILM_ARGS=$($PY src/psilm/llm/llamacpp_build.py flags); echo "$PSILM_ARGS"

echo "== carried wheels"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" $D/whl/*.whl \
    && export PYTHONPATH="$W/site" || echo "wheel install failed"

export PSILM_ARGS VERSION D W OUT PY
exec $PY -u - <<'EOF'
"""Build both wheels in parallel, then per build: install, decode in children, psilm's guard."""
import json, os, re, subprocess, sys, time
from pathlib import Path

D, W, OUT, PY = Path(os.environ["D"]), Path(os.environ["W"]), Path(os.environ["OUT"]), os.environ["PY"]
DRY = os.environ.get("DEVCHECK_DRY_SITE")  # local rehearsal: use this installed llama_cpp, no builds
sdist = D / f"llama_cpp_python-{os.environ['VERSION']}.tar.gz"
model = (D / "tiny-amx.gguf").resolve()
builds = {"psilm": os.environ["PSILM_ARGS"], "native": "-DGGML_NATIVE=ON"}
jobs = int(os.environ.get("DEVCHECK_JOBS", "8"))
t_start = time.time()

def cpu():
    info = Path("/proc/cpuinfo").read_text()
    model_name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    want = sorted(f for f in flags if re.fullmatch(r"amx\w*|avx512\w*|avx_vnni|hypervisor", f))
    probe = subprocess.run([str(W / "amx_probe")], capture_output=True, text=True) if (W / "amx_probe").exists() else None
    return {"model": model_name, "logical_cpus": os.cpu_count(), "flags_of_interest": want,
            "amx_in_cpuinfo": any(f.startswith("amx") for f in flags),
            "kernel": os.uname().release, "gvisor": os.uname().release == "4.4.0",
            "amx_probe": None if probe is None else {"rc": probe.returncode, "stdout": probe.stdout.strip(),
                                                     "stderr": probe.stderr.strip()[-300:]}}

result = {"question": "does psilm's llama.cpp build run on this CPU where a native build may crash?",
          "llama_cpp_python": os.environ["VERSION"], "cpu": cpu(),
          "psilm_cmake_args": builds["psilm"], "builds": {}}

def save():
    result["seconds_total"] = round(time.time() - t_start, 1)
    (OUT / "result.json").write_text(json.dumps(result, indent=2) + "\n")

save()
print(json.dumps(result["cpu"], indent=1), flush=True)

CHILD = r'''
import json, sys, time
import llama_cpp
path, threads = sys.argv[1], int(sys.argv[2])
t0 = time.time()
llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_batch=64, n_threads=threads,
                      n_threads_batch=threads, verbose=True)
prompt = "the quick brown fox jumps over the lazy dog and runs far away"
n_prompt = len(llm.tokenize(prompt.encode()))
out = llm.create_completion(prompt, max_tokens=8, temperature=0.0)
llm.close()
print(json.dumps({"prompt_tokens": n_prompt, "new_tokens": out["usage"]["completion_tokens"],
                  "seconds": round(time.time() - t0, 3),
                  "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()}))
'''

GUARD = r'''
import sys, types
from pathlib import Path
for name, p in (("psilm", "src/psilm"), ("psilm.llm", "src/psilm/llm")):  # skip psilm/__init__'s imports
    m = types.ModuleType(name); m.__path__ = [p]; sys.modules[name] = m
from psilm.errors import BackendError
from psilm.llm.llamacpp_check import ensure_works
try:
    ensure_works(Path(sys.argv[1]), int(sys.argv[2]))
    print("ensure_works: ok")
except BackendError as e:
    print(f"BackendError: {e}")
'''

LIBS = r'''
import os, sys
import llama_cpp
print(sys.executable, sys.version.split()[0], {k: v for k, v in os.environ.items() if k.startswith(("LD_", "PYTHON"))})
seen = []
for line in open("/proc/self/maps"):
    p = line.split()[-1]
    if p.endswith((".so", ".1", ".6", ".2")) or ".so." in p:
        if p not in seen and any(k in p for k in ("stdc++", "gomp", "ggml", "llama", "gcc_s", "libm.", "omp")):
            seen.append(p)
print("\n".join(seen))
'''

def env_for(site):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(W / "site")]),
            "PSILM_CACHE": str(W / f"psilm-cache-{site.name}")}

def test(name, site):
    r = result["builds"][name]
    r["decode"] = []
    with open(OUT / "decode-stderr.txt", "a") as err_log:
        for threads in (16, 4):
            t0 = time.time()
            try:
                p = subprocess.run([PY, "-c", CHILD, str(model), str(threads)], capture_output=True,
                                   text=True, timeout=90, env=env_for(site))
                rc, out, err = p.returncode, p.stdout, p.stderr
            except subprocess.TimeoutExpired as e:
                rc, out, err = 124, "", f"timeout {e}"
            err_log.write(f"===== {name} threads={threads} rc={rc}\n{err}\n")
            d = {"threads": threads, "rc": rc, "seconds": round(time.time() - t0, 2),
                 "buffers_and_amx_lines": [l.strip() for l in err.splitlines()
                                           if re.search(r"AMX|model buffer size|repack tensor blk\.0", l)][:8],
                 "stderr_tail": err.strip().splitlines()[-3:] if rc else []}
            if rc == 0 and out.strip():
                d.update(json.loads(out.strip().splitlines()[-1]))
            if rc < 0:
                d["signal"] = -rc
            r["decode"].append(d)
            print(name, json.dumps(d), flush=True)
            save()
    for label, cmd, env in (
        ("libs", [PY, "-c", LIBS], env_for(site)),
        ("libstdcxx_inside_libggml", ["sh", "-c", f"nm -D --defined-only {site}/llama_cpp/lib/libggml.so.0 | grep -c ' _ZNSo' ; "
                                      f"objdump -d {site}/llama_cpp/lib/libggml-cpu.so.0 | grep -c -E 'tdpb|tileloadd|ldtilecfg'"], env_for(site)),
        ("gdb", ["cuda-gdb", "-q", "-batch", "-ex", "run", "-ex", "bt 25", "-ex", "info sharedlibrary",
                 "--args", PY, "-c", CHILD, str(model), "16"], env_for(site)),
    ):
        t0 = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=100, env=env)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except Exception as e:
            rc, out, err = 124, "", repr(e)
        with open(OUT / "decode-stderr.txt", "a") as err_log:
            err_log.write(f"===== {name} {label} rc={rc}\n--- stdout\n{out}\n--- stderr\n{err}\n")
        d = {"rc": rc, "seconds": round(time.time() - t0, 2), "stdout_tail": out.strip().splitlines()[-12:]}
        r[label] = d
        print(name, label, json.dumps(d)[:1500], flush=True)
        save()
    try:
        import shutil
        shutil.copy(sorted((site / "llama_cpp" / "lib").glob("libggml-cpu.so*"))[0], OUT / f"libggml-cpu-{name}.so")
    except Exception as e:
        print("no wheel copy", e)
    t0 = time.time()
    try:
        g = subprocess.run([PY, "-c", GUARD, str(model), "16"], capture_output=True, text=True,
                           timeout=120, env=env_for(site))
        r["psilm_ensure_works"] = {"rc": g.returncode, "says": (g.stdout.strip() or g.stderr.strip()[-400:]),
                                   "seconds": round(time.time() - t0, 2)}
    except subprocess.TimeoutExpired:
        r["psilm_ensure_works"] = {"rc": 124, "says": "timeout"}
    print(name, "guard:", r["psilm_ensure_works"], flush=True)
    save()

procs = {}
for name, args in builds.items():
    full = f"{args} -DLLAVA_BUILD=OFF".strip()
    result["builds"][name] = {"cmake_args": full}
    if DRY:
        continue
    env = {**os.environ, "CMAKE_ARGS": full, "FORCE_CMAKE": "1", "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs)}
    log = open(OUT / f"build-{name}.log", "w")
    cmd = [PY, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index",
           "--no-cache-dir", "-w", str(W / f"wheel-{name}"), str(sdist)]
    procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time(), log)
    print("building", name, full, flush=True)

if DRY:
    for name in builds:
        result["builds"][name]["build"] = {"dry_run_site": DRY}
        test(name, Path(DRY))
pending = dict(procs)
deadline = t_start + float(os.environ.get("DEVCHECK_BUILD_LIMIT_S", "300"))
while pending:
    time.sleep(1)
    for name, (p, t0, log) in list(pending.items()):
        if p.poll() is None and time.time() < deadline:
            continue
        if p.poll() is None:
            p.kill(); p.wait()
        log.close()
        del pending[name]
        b = result["builds"][name]
        b["build"] = {"rc": p.returncode, "seconds": round(time.time() - t0, 1)}
        print(name, "build", b["build"], flush=True)
        wheels = sorted((W / f"wheel-{name}").glob("llama_cpp_python-*.whl"))
        if p.returncode != 0 or not wheels:
            save(); continue
        site = W / f"site-{name}"
        i = subprocess.run([PY, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                            "--target", str(site), str(wheels[0])], capture_output=True, text=True)
        b["install_rc"] = i.returncode
        if i.returncode == 0:
            test(name, site)
        save()
save()
print(json.dumps(result, indent=1))
EOF
