"""Compressed export against the entropy bound, and shift-add against multiplications.

1. The digits WFN model (the digits preset run on the shipped pretrained model, CPU, ~10 s).
2. A ResNet-18-sized synthetic WFN model: torchvision's resnet18 (ImageNet shapes, 11.7M parameters)
   with every conv/linear value drawn from 30 APoT centres with a skewed (Zipf, exponent 1.3) law,
   seeded; BatchNorm left as initialised (stored raw).

For each: whole-file bytes, the fixable part (ANS stream + codebook + frequencies) against the bound
``N·H/8 + table bytes`` and their ratio (goal ≤ 1.01), the fp32 ``torch.save(state_dict)`` size and
the ratio to it, and encode (``save_compressed``) / decode (``load_compressed``) wall-clock seconds.
A bit-exact round trip is checked. Then the shift-add operation counts of the digits network.

    python benchmarks/export.py [--threads 2] [--skip-digits]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from wfn_core.centres import candidate_centres
from wfn_core.compare.export import load_compressed, save_compressed
from wfn_core.compare.shiftadd import count_operations
from wfn_core.config import preset
from wfn_core.data import digits
from wfn_core.fixable import fixable_parameters
from wfn_core.models import DigitsCNN, load_pretrained_digits, torchvision_model
from wfn_core.pipeline import run_wfn


def synthetic_resnet18(n_values: int = 30, seed: int = 0) -> torch.nn.Module:
    """torchvision resnet18 whose conv/linear values are drawn from ``n_values`` APoT centres (Zipf law)."""
    gen = torch.Generator().manual_seed(seed)
    centres = candidate_centres(0.5, 0.05, 1)
    values = centres[torch.randperm(centres.numel(), generator=gen)[:n_values]].to(torch.float32)
    probs = 1.0 / torch.arange(1, n_values + 1, dtype=torch.float64) ** 1.3
    model = torchvision_model("resnet18")
    with torch.no_grad():
        for _, p in fixable_parameters(model):
            p.copy_(values[torch.multinomial(probs, p.numel(), replacement=True, generator=gen)].view_as(p))
    return model


def _bit_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(
        torch.equal(sa[k].contiguous().reshape(-1).view(torch.uint8), sb[k].contiguous().reshape(-1).view(torch.uint8))
        for k in sa
    )


def measure(name: str, model: torch.nn.Module, empty: torch.nn.Module, folder: Path) -> None:
    path = folder / f"{name}.wfnz"
    r = save_compressed(model, path)
    began = time.perf_counter()
    load_compressed(path, empty)
    decode = time.perf_counter() - began
    print(f"\n{name}")
    print(f"  fixable values N      {r['n_symbols']:>12,}   unique {r['unique']}, "
          f"entropy H = {r['entropy_bits']:.4f} bits")
    print(f"  bound N*H/8 + tables  {r['bound_bytes']:>12,.0f} B  (tables {r['table_bytes']} B)")
    print(f"  fixable part          {r['fixable_bytes']:>12,} B  (ANS stream {r['stream_bytes']:,} B)")
    print(f"  ratio to the bound    {r['ratio']:>12.6f}   (goal <= 1.01)")
    print(f"  whole file            {r['bytes']:>12,} B  (raw tensors {r['raw_bytes']:,} B, "
          f"header+checksum {r['header_bytes']:,} B)")
    print(f"  fp32 state_dict       {r['fp32_state_dict_bytes']:>12,} B  ratio to fp32 {r['ratio_to_fp32']:.4f} "
          f"({1 / r['ratio_to_fp32']:.1f}x smaller)")
    exact = _bit_equal(model, empty)
    print(f"  encode {r['encode_seconds']:.3f} s, decode {decode:.3f} s, bit-exact round trip: {exact}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-digits", action="store_true", help="skip the digits WFN run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        digits_model = None
        if not args.skip_digits:
            began = time.perf_counter()
            result = run_wfn(load_pretrained_digits(), *digits(), preset("digits"), device="cpu")
            digits_model = result.model.eval()
            seconds, top1 = time.perf_counter() - began, 100 * result.final["top1"]
            print(f"digits preset WFN run: {seconds:.1f} s, top-1 {top1:.2f}%")
            measure("digits WFN model (DigitsCNN, include_bn=False)", digits_model, DigitsCNN(), folder)
        began = time.perf_counter()
        model = synthetic_resnet18()
        print(f"\n(synthetic ResNet-18 built in {time.perf_counter() - began:.1f} s)")
        measure("ResNet-18-sized synthetic WFN model (torchvision resnet18, 30 APoT values, Zipf 1.3)", model,
                torchvision_model("resnet18"), folder)
        if digits_model is not None:
            ops = count_operations(digits_model, input_shape=(1, 8, 8))
            print("\nshift-add inference of the digits WFN model, per input sample")
            print(f"  {'layer':<14}{'multiplications':>16}{'non-zero mults':>16}{'shift-adds':>12}")
            for layer, row in [*ops["layers"].items(), ("total", ops)]:
                mults, nonzero, adds = row["multiplications"], row["nonzero_multiplications"], row["shift_adds"]
                print(f"  {layer:<14}{mults:>16,}{nonzero:>16,}{adds:>12,}")


if __name__ == "__main__":
    main()
