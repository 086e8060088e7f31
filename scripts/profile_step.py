"""Where a training step's time goes (the measurements behind README "Training speed").

    OMP_NUM_THREADS=1 python scripts/profile_step.py tokenizer   # torch.profiler table of the shipped tokenizer step
    OMP_NUM_THREADS=1 python scripts/profile_step.py layers      # each conv, forward + backward: oneDNN vs native
    OMP_NUM_THREADS=1 python scripts/profile_step.py output-conv # the 16->1 output conv written three other ways
    OMP_NUM_THREADS=1 python scripts/profile_step.py prior       # torch.profiler table of the shipped prior step

Shipped settings: tokenizer MVQ T=2 K=16 g=4, base channels 16, batch 128 of 28x28; prior 4 layers, width 128,
batch 256, with a mask head. One thread unless --threads.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def tokenizer():
    from tokenizer_cli.config import QuantizerConfig, TokenizerConfig
    from tokenizer_cli.models import Tokenizer

    torch.manual_seed(0)
    return Tokenizer(TokenizerConfig(base_channels=16, tokens=2,
                                     quantizer=QuantizerConfig(kind="mvq", num_codes=16, mask_bits=4)))


def median_ms(fn, repeats: int = 7) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1000


def profile(step, rows: int = 20) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    for _ in range(3):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(8):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def tokenizer_step() -> None:
    m = tokenizer().train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x = torch.rand(128, 1, 28, 28) * 2 - 1

    def step():
        r, q = m(x)
        loss = F.mse_loss(r, x) + q.loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    profile(step)


def layers() -> None:
    m = tokenizer()
    shapes = {}
    hooks = [mod.register_forward_hook(lambda mod, inp, out: shapes.__setitem__(mod, inp[0].shape))
             for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    m(torch.rand(128, 1, 28, 28))
    for h in hooks:
        h.remove()
    total = {True: 0.0, False: 0.0}
    for mod, shape in shapes.items():
        x = torch.randn(shape, requires_grad=True)
        row = []
        for onednn in (True, False):
            def run():
                with torch.backends.mkldnn.flags(enabled=onednn):
                    mod(x).sum().backward()
            ms = median_ms(run)
            total[onednn] += ms
            row.append(ms)
        print(f"{mod.in_channels:3d}->{mod.out_channels:3d} k{mod.kernel_size[0]} s{mod.stride[0]} {shape[-1]:2d}px: "
              f"oneDNN {row[0]:6.1f} ms  native {row[1]:6.1f} ms  ({row[1] / row[0]:.2f}x)")
    print(f"total oneDNN {total[True]:.0f} ms, native {total[False]:.0f} ms")


def output_conv() -> None:
    x0 = torch.randn(128, 16, 28, 28)
    w = torch.randn(1, 16, 3, 3, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    ways = {
        "conv2d": lambda x: F.conv2d(x, w, b, padding=1),
        "padded to 8 channels": lambda x: F.conv2d(x, torch.cat([w, w.new_zeros(7, 16, 3, 3)]),
                                                   torch.cat([b, b.new_zeros(7)]), padding=1)[:, :1],
        "unfold + matmul": lambda x: (w.view(1, 144) @ F.unfold(x, 3, padding=1)).view(len(x), 1, 28, 28)
                                     + b.view(1, 1, 1, 1),
        "channels-last": lambda x: F.conv2d(x.contiguous(memory_format=torch.channels_last), w, b, padding=1),
    }
    for name, f in ways.items():
        x = x0.clone().requires_grad_()
        print(f"{name}: {median_ms(lambda: f(x).square().sum().backward(), 9):.1f} ms forward + backward")


def prior_step() -> None:
    from tokenizer_cli.config import PriorConfig
    from tokenizer_cli.models.prior import Prior, sequence_loss

    m = Prior(PriorConfig(vocab_size=16, tokens=2, num_masks=15)).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    tokens, masks = torch.randint(0, 16, (256, 2)), torch.randint(0, 15, (256, 2))

    def step():
        loss = sequence_loss(m(tokens, None, masks), tokens, masks)
        opt.zero_grad()
        loss.backward()
        opt.step()

    print(f"{median_ms(step, 20):.1f} ms per step")
    profile(step, 15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["tokenizer", "layers", "output-conv", "prior"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    {"tokenizer": tokenizer_step, "layers": layers, "output-conv": output_conv, "prior": prior_step}[a.what]()


if __name__ == "__main__":
    main()
