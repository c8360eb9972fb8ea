"""The GEMM rates at the training shapes (issue 14, step 1): every matrix
product of the benchmark networks' forward and backward passes
(fastfc.bench.cases.TRAIN_STEP_NETWORKS), as fastfc issues them, timed in
float32 on each BLAS this machine has, against the same library's rate on a
large square product.

Libraries, each timed in its own process, the processes interleaved in
rounds (the best round's median per shape is kept):
- scipy: SciPy's OpenBLAS, the one fastfc calls (scipy.linalg.blas.sgemm)
- numpy: NumPy's OpenBLAS (np.matmul into a kept output)
- blis: the `blis` package (BLIS, single-threaded as the wheel is built)
- mkl: Intel MKL from the `mkl` wheel (cblas_sgemm through ctypes)
- packed: fastfc's own packed GEMM (fastfc_packed_gemm_f32, one thread:
  whole products are timed on its pieces' rows only)
- unpacked: fastfc's own unpacked AVX-512 GEMM (fastfc_unpacked_gemm_f32, one
  thread, B untransposed only: pieces only, where the CPU has AVX-512)
- fastfc: fastfc_gemm as the affine layers call it (affine_gemms_only: a
  layer's forward and both backward products, threads split as the kernels
  split them), reported per layer

Rows: the whole product at the thread count asked (--threads, default 2)
and, where fastfc splits it or runs it on one thread (convolution: one
image per thread), the piece one thread computes, timed on one thread.

    python benchmarks/gemm_shapes.py [--rounds 3] [--threads 2]
    pip install blis mkl   # the optional contenders
"""
import argparse
import ctypes
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

LIBRARIES = ("scipy", "numpy", "blis", "mkl", "packed", "unpacked", "fastfc")
LARGE = (2048, 2048, 2048, "N", "N")


def network_gemms(threads):
    """[(network, product, (m, n, k, trans_a, trans_b), piece or None)]: the
    row-major products C (m, n) = op(A) op(B) of each training step, and the
    piece one thread computes (fastfc_gemm's split of rows, else columns; a
    convolution's per-image product)."""
    from fastfc.bench.cases import TRAIN_STEP_NETWORKS

    rows = []
    for name, net, batch in TRAIN_STEP_NETWORKS:
        shape = None  # (C, H, W) of the activations, for conv nets
        first = True
        for kind, sizes in net:
            if kind == "conv":
                c_in, c_out, k, pad = sizes
                shape = shape or (c_in, *net_input_hw(name))
                _, h, w = shape
                pixels, k_rows = h * w, c_in * k * k  # stride 1, 'same' padding
                per_image = [("conv forward", (c_out, pixels, k_rows, "N", "N")),
                             ("conv dw", (c_out, k_rows, pixels, "N", "T"))]
                if not first:
                    per_image.append(("conv dx", (k_rows, pixels, c_out, "T", "N")))
                for product, dims in per_image:
                    rows.append((name, f"{product} {c_in}->{c_out} (per image)", dims, dims))
                shape = (c_out, h, w)
                first = False
            elif kind == "pool":
                c, h, w = shape
                shape = (c, h // 2, w // 2)
            elif kind == "linear":
                d_in, d_out = sizes
                products = [("forward", (batch, d_out, d_in, "N", "N")),
                            ("dw", (d_in, d_out, batch, "T", "N"))]
                if not first:
                    products.append(("dx", (batch, d_in, d_out, "N", "T")))
                for product, dims in products:
                    rows.append((name, f"linear {d_in}->{d_out} {product}", dims,
                                 thread_piece(dims, threads)))
                first = False
    return rows


def net_input_hw(name):
    return (32, 32) if "32x32" in name else (28, 28)


def thread_piece(dims, threads):
    """The product one of threads computes under fastfc_gemm's split (csrc/gemm.c)."""
    m, n, k, ta, tb = dims
    if threads <= 1 or 2 * m * n * k < threads * (1 << 20):  # FASTFC_GEMM_MIN_FLOPS_PER_THREAD
        return None
    if m >= n or m >= 32 * threads:
        return (-(-m // threads), n, k, ta, tb)
    return (m, -(-n // threads), k, ta, tb)


def operands(dims, rng):
    """(A, B, C) row-major float32 arrays for C = op(A) op(B)."""
    m, n, k, ta, tb = dims
    a = rng.standard_normal((k, m) if ta == "T" else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb == "T" else (k, n), dtype=np.float32)
    return a, b, np.zeros((m, n), np.float32)


def gemm_caller(library, dims, a, b, c):
    """A callable writing op(a) op(b) into c with library (None: not
    installed); a, b, c as operands(dims) makes them."""
    m, n, k, ta, tb = dims
    op_a = a.T if ta == "T" else a
    op_b = b.T if tb == "T" else b
    if library == "numpy":
        return lambda: np.matmul(op_a, op_b, out=c)
    if library == "scipy":
        from scipy.linalg.blas import sgemm
        # Column-major views, no copies (f2py copies any array that is not
        # Fortran-ordered): C^T = op(B)^T op(A)^T, the transposes by flag,
        # as fastfc's C calls it.
        ct, af, bf = c.T, a.T, b.T
        flag_a, flag_b = int(tb == "T"), int(ta == "T")
        return lambda: sgemm(1.0, bf, af, c=ct, trans_a=flag_a, trans_b=flag_b, overwrite_c=True)
    if library == "blis":
        try:
            import blis.py
        except ImportError:
            return None
        return lambda: blis.py.gemm(a, b, out=c, trans1=ta == "T", trans2=tb == "T", beta=0.0)
    if library == "packed":
        import fastfc._affine
        lib = ctypes.CDLL(fastfc._affine.__file__)
        pa, pb, pc = (x.ctypes.data_as(ctypes.c_void_p) for x in (a, b, c))
        lib.fastfc_packed_gemm_f32.restype = ctypes.c_int
        args = (ctypes.c_int(1), ctypes.c_char(ta.encode()), ctypes.c_char(tb.encode()), ctypes.c_int64(m),
                ctypes.c_int64(n), ctypes.c_int64(k), ctypes.c_float(1.0), pa, ctypes.c_int64(a.shape[1]), pb,
                ctypes.c_int64(b.shape[1]), ctypes.c_float(0.0), pc, ctypes.c_int64(n), None, ctypes.c_int(0))
        return lambda: lib.fastfc_packed_gemm_f32(*args)
    if library == "unpacked":
        import fastfc._affine
        if tb == "T":
            return None  # it reads B untransposed only
        lib = ctypes.CDLL(fastfc._affine.__file__)
        pa, pb, pc = (x.ctypes.data_as(ctypes.c_void_p) for x in (a, b, c))
        lib.fastfc_unpacked_gemm_f32.restype = ctypes.c_int
        args = (ctypes.c_char(ta.encode()), ctypes.c_int64(m), ctypes.c_int64(n), ctypes.c_int64(k),
                ctypes.c_float(1.0), pa, ctypes.c_int64(a.shape[1]), pb, ctypes.c_int64(b.shape[1]),
                ctypes.c_float(0.0), pc, ctypes.c_int64(n), None, ctypes.c_int(0))
        if lib.fastfc_unpacked_gemm_f32(*args) != 0:
            return None  # no AVX-512 on this CPU
        return lambda: lib.fastfc_unpacked_gemm_f32(*args)
    if library == "mkl":
        lib = mkl_library()
        if lib is None:
            return None
        cblas_order, trans = 101, {"N": 111, "T": 112}
        pa, pb, pc = (x.ctypes.data_as(ctypes.c_void_p) for x in (a, b, c))
        args = (cblas_order, trans[ta], trans[tb], m, n, k, ctypes.c_float(1.0), pa, a.shape[1],
                pb, b.shape[1], ctypes.c_float(0.0), pc, n)
        return lambda: lib.cblas_sgemm(*args)
    raise ValueError(library)


_MKL = []


def mkl_library():
    if not _MKL:
        found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
        _MKL.append(ctypes.CDLL(found[0]) if found else None)
    return _MKL[0]


def set_threads(library, threads):
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    if library == "mkl" and mkl_library() is not None:
        mkl_library().MKL_Set_Num_Threads(threads)
    import fastfc
    fastfc.set_num_threads(threads)


def seconds_per_call(call, budget=0.15):
    """Median seconds of one call over repeats of a batch of calls about
    budget/5 seconds long (after warm-up calls)."""
    for _ in range(3):
        call()
    number, start = 1, time.perf_counter()
    while True:
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - start
        if elapsed > budget / 5:
            break
        number *= 2
        start = time.perf_counter()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(number):
            call()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def gflops(dims, seconds):
    m, n, k, _, _ = dims
    return 2 * m * n * k / seconds / 1e9


def computes_products(library, rng):
    """Whether library's caller gives op(A) op(B) for every transpose pair
    (checked before anything of it is timed)."""
    for ta in "NT":
        for tb in "N" if library == "unpacked" else "NT":
            dims = (5, 7, 3, ta, tb)
            a, b, c = operands(dims, rng)
            call = gemm_caller(library, dims, a, b, c)
            if call is None:
                return False
            call()
            want = (a.T if ta == "T" else a) @ (b.T if tb == "T" else b)
            if not np.allclose(c, want, rtol=1e-5, atol=1e-5):
                raise AssertionError(f"{library} computes a wrong product for {dims}")
    return True


def measure(library, threads):
    """{key: GFLOP/s} of library on every row (whole products at threads,
    pieces at 1), the large product at both, and fastfc's layers."""
    rng = np.random.default_rng(0)
    if library != "fastfc" and not computes_products(library, rng):
        return {}  # not installed
    rates = {}
    rows = network_gemms(threads)
    for count in sorted({threads, 1}, reverse=True):
        set_threads(library, count if library != "blis" else 1)
        if library == "fastfc":
            if count == threads:
                rates.update(fastfc_layer_rates(rng))
            continue
        if library in ("packed", "unpacked") and count != 1:
            continue  # one thread's kernel: pieces only
        caller = gemm_caller(library, LARGE, *operands(LARGE, rng))
        rates[f"large/{count}"] = gflops(LARGE, seconds_per_call(caller, 0.5))
        for _, _, dims, piece in rows:
            wanted = dims if count == threads else piece
            if wanted is not None:
                call = gemm_caller(library, wanted, *operands(wanted, rng))
                if call is not None:  # (unpacked: not for B transposed)
                    rates[f"{wanted}/{count}"] = gflops(wanted, seconds_per_call(call))
    return rates


def fastfc_layer_rates(rng):
    """{'layer d_in->d_out batch N': GFLOP/s} of affine_gemms_only (the three
    products of an affine layer) for every linear layer of the networks."""
    from fastfc._affine import affine_gemms_only
    from fastfc.bench.cases import TRAIN_STEP_NETWORKS

    rates = {}
    for _, net, batch in TRAIN_STEP_NETWORKS:
        for kind, sizes in net:
            if kind != "linear":
                continue
            d_in, d_out = sizes
            x = rng.standard_normal((batch, d_in), dtype=np.float32)
            w = rng.standard_normal((d_in, d_out), dtype=np.float32)
            dout = rng.standard_normal((batch, d_out), dtype=np.float32)
            seconds = seconds_per_call(lambda: affine_gemms_only(x, w, dout))
            rates[f"layer {d_in}->{d_out} batch {batch}"] = 3 * 2 * batch * d_in * d_out / seconds / 1e9
    return rates


def run_rounds(rounds, threads, libraries=LIBRARIES):
    """{library: {key: best round's rate}}, each library in its own process,
    the libraries' order rotating each round."""
    best = {library: {} for library in LIBRARIES}
    env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT="4")
    for r in range(rounds):
        order = libraries[r % len(libraries):] + libraries[:r % len(libraries)]
        for library in order:
            out = subprocess.run([sys.executable, __file__, "--child", library, "--threads", str(threads)],
                                 capture_output=True, text=True, env=env, check=True).stdout
            for key, rate in json.loads(out).items():
                best[library][key] = max(rate, best[library].get(key, 0.0))
    return best


def report(best, threads):
    shown = [lib for lib in LIBRARIES if lib != "fastfc" and best[lib]]
    print(f"float32 GFLOP/s, {threads} threads for whole products, 1 for pieces; "
          f"best round's median per shape")
    def large(lib):
        whole, one = best[lib].get(f"large/{threads}"), best[lib]["large/1"]
        return f"{lib} {whole:.0f} ({one:.0f} on 1)" if whole else f"{lib} {one:.0f} on 1"
    print("large 2048^3: " + ", ".join(large(lib) for lib in shown))
    print()
    print("| network | product | m x n x k (op) | " + " | ".join(shown) + " | of scipy's large rate |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in shown) + " | --- |")
    for network, product, dims, piece in network_gemms(threads):
        for wanted, count, label in ((dims, threads, product), (piece, 1, "  one thread's piece")):
            if wanted is None or (count == 1 and wanted == dims and threads == 1):
                continue
            if count == 1 and piece == dims:
                label = product + " (one thread)"
            key = f"{wanted}/{count}"
            if key not in best["scipy"]:
                continue
            m, n, k, ta, tb = wanted
            cells = " | ".join(f"{best[lib].get(key, float('nan')):.0f}" for lib in shown)
            fraction = best["scipy"][key] / best["scipy"][f"large/{count}"]
            print(f"| {network} | {label} | {m}x{n}x{k} ({ta}{tb}) | {cells} | {fraction:.0%} |")
    print()
    if best["fastfc"]:
        print("fastfc_gemm per affine layer (forward + dw + dx, its own thread split), "
              f"{threads} threads:")
    for key, rate in best["fastfc"].items():
        print(f"  {key}: {rate:.0f} GFLOP/s ({rate / best['scipy'][f'large/{threads}']:.0%} of scipy's large rate)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--libraries", default=",".join(LIBRARIES),
                        help=f"comma-separated, of {', '.join(LIBRARIES)} (scipy always runs: the reference)")
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({str(k): v for k, v in measure(args.child, args.threads).items()}))
        return
    libraries = tuple(lib for lib in LIBRARIES if lib in args.libraries.split(",") or lib == "scipy")
    report(run_rounds(args.rounds, args.threads, libraries), args.threads)


if __name__ == "__main__":
    main()
