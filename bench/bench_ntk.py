"""Benchmark: empirical NTK implementations side by side on the default ConvNet.

Compares, on one probe of N images (kernel ``K(x, x)``, ``--mode`` reduction):

- ``naive``: the reference — a Python loop, one forward per image and one ``autograd.grad`` per
  logit, rows stacked into an explicit Jacobian ``J (N·O, P)``, then ``J Jᵀ``;
- every :class:`dynamics.ntk.NTKImplementation` except AUTO (``--impls`` to choose).

Each (implementation, size) runs in a fresh subprocess, so the peak memory can be measured
honestly: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak resident set size) after the kernel
minus the same value just before it (model, data and torch already loaded). tracemalloc would miss
torch's allocations. The child saves its kernel; the parent checks that every kernel agrees with
the naive one (max |ΔK| / max |K|).

Usage::

    python bench/bench_ntk.py                       # sizes 100 250 500
    python bench/bench_ntk.py --sizes 50 100
    python bench/bench_ntk.py --quick               # sizes 20 50
    python bench/bench_ntk.py --markdown            # print a markdown table too

The model is ``condense.networks.build_network('convnet', 1, 10, (28, 28))`` (width 128, depth
3, instance norm, avg pooling; 28×28×1 inputs) when that module exists, else an equivalent local
definition. Inputs are seeded standard-normal images (the NTK's cost does not depend on content).
Each run uses one intra-op thread unless ``--threads`` says otherwise: on a 2-core machine shared
with other jobs, two threads mostly measure OpenMP contention (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from machine import describe_machine  # noqa: E402  (bench/machine.py)

IMPLS = ("naive", "per_example_loop", "layerwise_gradients", "jacobian_contraction", "ntk_vector_products")


def default_convnet() -> tuple[nn.Module, str]:
    """The DC default ConvNet for 1×28×28 inputs and 10 classes, in eval mode, seeded."""
    torch.manual_seed(0)  # the same weights in every subprocess
    try:
        from condense.networks import build_network

        return build_network("convnet", 1, 10, (28, 28)).eval(), "condense.networks.build_network('convnet', 1, 10, (28, 28))"
    except ImportError:
        pass
    layers: list[nn.Module] = []
    c = 1
    for d in range(3):  # 28 -(pad 3)-> 32 -> 16 -> 8 -> 4, as in the authors' code
        layers += [nn.Conv2d(c, 128, 3, padding=3 if d == 0 else 1), nn.GroupNorm(128, 128), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2)]
        c = 128
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 10)).eval(), "local ConvNet (bench/bench_ntk.py)"


def naive_ntk(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Loop of autograd.grad per image and logit; explicit J (N·O, P); K = J Jᵀ reduced by mode."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        for o in range(out.numel()):
            g = torch.autograd.grad(out[o], params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1) for gi, p in zip(g, params)]))
    n, n_out = x.shape[0], len(rows) // x.shape[0]
    jac = torch.stack(rows)  # (N·O, P)
    del rows
    k = (jac @ jac.T).reshape(n, n_out, n, n_out).permute(0, 2, 1, 3)  # (N, N, O, O)
    if mode == "full":
        return k.contiguous()
    diag = torch.diagonal(k, dim1=2, dim2=3)
    return diag.sum(-1) if mode == "trace" else diag.contiguous()


def child(args: argparse.Namespace) -> None:
    """Compute one kernel, print a JSON line with seconds and peak-RSS delta, save the kernel."""
    torch.set_num_threads(args.threads)
    from dynamics.ntk import empirical_ntk

    model, _ = default_convnet()
    x = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x[:2])  # warm up the kernels' code paths outside the timed region
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if args.impl == "naive":
        k = naive_ntk(model, x, args.mode)
    else:
        k = empirical_ntk(model, x, mode=args.mode, implementation=args.impl, tile_size=args.tile_size, chunk_size=args.chunk_size)
    seconds = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.save(k, args.out)
    print(json.dumps({"impl": args.impl, "n": args.n, "seconds": seconds, "peak_rss_mib": (rss1 - rss0) / 1024}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500], help="probe sizes N")
    parser.add_argument("--quick", action="store_true", help="sizes 20 50")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--mode", default="trace", choices=("full", "trace", "diagonal"))
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in each run")
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--vp-max-n", type=int, default=20,
                        help="run ntk_vector_products only up to this N (it is ~40x slower than naive here)")
    parser.add_argument("--vp-chunk-size", type=int, default=1,
                        help="chunk_size for ntk_vector_products (memory ∝ chunk·O·N·activations)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run before it is abandoned")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per (implementation, N), each in a fresh process; the fastest is reported")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table at the end")
    # internal: one measurement in this process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    sizes = [20, 50] if args.quick else args.sizes

    model, source = default_convnet()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"# machine: {describe_machine()}; threads per run: {args.threads}; fastest of {args.repeats} run(s)")
    print(f"# model: {source}; {n_params:,} parameters, 10 logits; mode={args.mode}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            ref = None
            naive_s = None
            for impl in args.impls:
                if impl == "ntk_vector_products" and n > args.vp_max_n:
                    continue
                out = Path(tmp) / f"{impl}_{n}.pt"
                cmd = [sys.executable, __file__, "--child", "--impl", impl, "--n", str(n), "--out", str(out),
                       "--mode", args.mode, "--threads", str(args.threads)]
                if args.tile_size:
                    cmd += ["--tile-size", str(args.tile_size)]
                chunk = args.vp_chunk_size if impl == "ntk_vector_products" else args.chunk_size
                if chunk:
                    cmd += ["--chunk-size", str(chunk)]
                row = None
                for _ in range(args.repeats):
                    try:
                        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                    except subprocess.TimeoutExpired:
                        continue
                    if proc.returncode != 0:
                        raise SystemExit(f"{impl} at N={n} failed:\n{proc.stderr[-3000:]}")
                    run = json.loads(proc.stdout.strip().splitlines()[-1])
                    if row is None or run["seconds"] < row["seconds"]:
                        row = run
                if row is None:
                    row = {"impl": impl, "n": n, "seconds": None, "peak_rss_mib": None, "note": f"> {args.timeout:.0f} s, abandoned"}
                    results.append(row)
                    print(json.dumps(row), flush=True)
                    continue
                k = torch.load(out, weights_only=True)
                if ref is None:
                    ref, naive_s = k, (row["seconds"] if impl == "naive" else None)
                    row["rel_err"] = 0.0
                else:
                    row["rel_err"] = ((k - ref).abs().max() / ref.abs().max()).item()
                row["speedup_vs_naive"] = naive_s / row["seconds"] if naive_s else None
                out.unlink()
                results.append(row)
                print(json.dumps(row), flush=True)
    if args.markdown:
        print()
        print("| N | implementation | seconds | peak RSS Δ (MiB) | speed-up vs naive | max rel. diff vs naive |")
        print("|---:|---|---:|---:|---:|---:|")
        for r in results:
            if r["seconds"] is None:
                print(f"| {r['n']} | {r['impl']} | {r['note']} | – | – | – |")
                continue
            sp = f"{r['speedup_vs_naive']:.2f}×" if r.get("speedup_vs_naive") else "–"
            print(f"| {r['n']} | {r['impl']} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} | {sp} | {r['rel_err']:.1e} |")


if __name__ == "__main__":
    main()
