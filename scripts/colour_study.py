"""Quality per CPU-second of colour tokenizer designs on the picture set (issue: a colour default).

Each variant trains for the same budget of this process's CPU time (one thread: run two lanes side by side,
OMP_NUM_THREADS=1 each) and is measured at milestones of that budget on held-out crops of the picture set and on
the hold-out photographs, beside the thumbnail baseline with as many cells as the model has tokens. One JSON
line a milestone goes to OUT/VARIANT.jsonl; `--report` prints the table (results/colour-study/).

    OMP_NUM_THREADS=1 python scripts/colour_study.py --variants conv32,vit256 --budget 600 --out runs/colour-study
    python scripts/colour_study.py --report --out runs/colour-study > results/colour-study/table.md
    OMP_NUM_THREADS=1 python scripts/colour_study.py --step-times > results/colour-study/step-times.md
    python scripts/colour_study.py --measure fsq-pictures-t16 fsq-pictures-t64 > results/colour-study/shipped.md
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # the package `comparison` sits beside this file
    sys.path.insert(0, HERE)

from comparison.timing import cpu_seconds_per_step  # noqa: E402
from tokenizer_cli.config import QuantizerConfig, TokenizerConfig  # noqa: E402
from tokenizer_cli.images import to_float  # noqa: E402
from tokenizer_cli.models import Tokenizer  # noqa: E402
from tokenizer_cli.train import BatchOrder, TrainConfig, lr_at  # noqa: E402

DATA = Path("/work/data/pictures64")
FSQ_1000 = {"kind": "fsq", "levels": [8, 5, 5, 5]}
# --quantizer: FSQ 1,000 codes for the colour default; the picture comparison's K=16 pair (issue 18)
QUANTIZERS: dict[str, dict] = {"fsq-1000": FSQ_1000, "mvq-k16g4": {"kind": "mvq", "num_codes": 16, "mask_bits": 4},
                               "vq-k16": {"kind": "vq", "num_codes": 16}}


def quantizer_tag(quantizer: str, sep: str) -> str:
    """How a run's --quantizer shows in its file name and table row: nothing for the default (FSQ 1,000)."""
    return "" if quantizer == "fsq-1000" else f"{sep}{quantizer}"
GROUPS = ["photo", "painting", "texture", "render", "clip-art", "sprite", "icon"]  # prepare_pictures.py's labels

# name: (tokenizer settings, learning rate, precision)
VARIANTS: dict[str, tuple[dict, float, str]] = {
    "conv16": ({"base_channels": 16}, 2e-3, "fp32"),
    "conv16-rb0": ({"base_channels": 16, "res_blocks": 0}, 2e-3, "fp32"),
    "conv32": ({"base_channels": 32}, 2e-3, "fp32"),
    "conv48": ({"base_channels": 48}, 2e-3, "fp32"),
    "conv16-bf16": ({"base_channels": 16}, 2e-3, "bf16"),
    "conv32-bf16": ({"base_channels": 32}, 2e-3, "bf16"),
    "vit192": ({"backbone": "vit", "vit_width": 192, "vit_heads": 3}, 1e-3, "fp32"),
    "vit192-bf16": ({"backbone": "vit", "vit_width": 192, "vit_heads": 3}, 1e-3, "bf16"),
    "vit256": ({"backbone": "vit", "vit_width": 256}, 1e-3, "fp32"),
    "vit256-bf16": ({"backbone": "vit", "vit_width": 256}, 1e-3, "bf16"),
    "vit384-bf16": ({"backbone": "vit", "vit_width": 384, "vit_heads": 6}, 1e-3, "bf16"),
}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of PSNR in dB on [0, 1] pixels (inputs in [-1, 1])."""
    mse = ((a.float() - b.float()) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((-10 * mse.log10()).mean())


def thumbnail(x: torch.Tensor, cells: int) -> torch.Tensor:
    """Shrink to cells x cells (area average) and enlarge bicubically: the baseline a tokenizer must beat."""
    small = F.interpolate(x, size=(cells, cells), mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)


@torch.inference_mode()
def measure(model: Tokenizer, sets: dict[str, torch.Tensor], cells: int) -> dict:
    model.eval()
    out = {}
    for name, x in sets.items():
        recon = torch.cat([model.decode_latents(model.quantize(model.latents(b)).z_q).clamp(-1, 1)
                           for b in x.split(250)])
        out[f"psnr_{name}"] = round(psnr(recon, x), 3)
        out[f"thumb_{name}"] = round(psnr(thumbnail(x, cells), x), 3)
    ids = torch.cat([model.encode(b) for b in sets["test"].split(250)])
    out["codes_used"] = int(ids.unique().numel())
    model.train()
    return out


def load_sets(limit: int) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    train = np.load(DATA / "train" / "images.npy", mmap_mode="r")
    test = np.load(DATA / "test" / "images.npy", mmap_mode="r")
    pick = np.random.default_rng(0).permutation(len(test))[:limit]
    sets = {"test": to_float(np.ascontiguousarray(test[np.sort(pick)]))}
    holdout = DATA / "holdout" / "images.npy"
    if holdout.is_file():
        sets["photos"] = to_float(np.load(holdout))
    return np.ascontiguousarray(train), sets


def run_variant(name: str, args) -> None:
    tok_settings, lr, precision = VARIANTS[name]
    torch.manual_seed(args.seed)
    q = QuantizerConfig(**QUANTIZERS[args.quantizer])
    cfg = TokenizerConfig(image_size=64, channels=3, tokens=args.tokens, layout=args.layout, quantizer=q,
                          **tok_settings)
    model = Tokenizer(cfg)
    train, sets = load_sets(args.eval_images)
    data = torch.from_numpy(train)
    order = BatchOrder(len(data), args.batch_size, args.seed)

    def step_loss(step: int) -> torch.Tensor:
        x = to_float(data[order.indices(step)])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            recon, qout = model(x)
        return F.mse_loss(recon.float(), x) + qout.loss

    # The step count that fills the budget, from the CPU time of a few steps of a throwaway copy.
    probe = TrainConfig(steps=10**9, lr=lr)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for s in range(2):
        step_loss(s).backward()
    t = time.process_time()
    for s in range(4):
        opt.zero_grad(set_to_none=True)
        step_loss(s).backward()
        opt.step()
    per_step = (time.process_time() - t) / 4
    model.load_state_dict(state)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99))
    steps = max(50, int(args.budget / per_step))
    tcfg = TrainConfig(steps=steps, lr=lr, warmup=min(200, steps // 10))
    del probe
    milestones = sorted({int(steps * f) for f in (0.125, 0.25, 0.5, 1.0)})
    out = Path(args.out) / f"{name}{quantizer_tag(args.quantizer, '-')}-t{args.tokens}-{args.layout}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    cpu = 0.0
    info = {"variant": name, "quantizer": args.quantizer, "tokens": args.tokens, "layout": args.layout,
            "precision": precision, "lr": lr,
            "params": sum(p.numel() for p in model.parameters()), "per_step_probe": round(per_step, 4),
            "steps": steps, "batch": args.batch_size, "cpu": cpu_name(),
            "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    print(json.dumps(info), flush=True)
    model.train()
    for step in range(steps):
        t = time.process_time()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tcfg)
        loss = step_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        cpu += time.process_time() - t
        if step + 1 in milestones:
            row = {**info, "step": step + 1, "cpu_seconds": round(cpu, 1), "loss": round(loss.item(), 5),
                   **measure(model, sets, cells=int(round(args.tokens ** 0.5)))}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


# name: the terms beside MSE when a finished model trains on (--init): equal CPU time each
OBJECTIVES: dict[str, dict] = {
    "mse": {},
    "adv": {"adversarial_weight": 0.1},
    "feat": {"feature_weight": 0.1},
    "adv-feat": {"adversarial_weight": 0.1, "feature_weight": 0.1},
}


def run_objective(name: str, args) -> None:
    """Train a finished model (--init) on for --budget CPU seconds with objective `name` (OBJECTIVES), through the
    library's loop (`train.train_tokenizer`: checkpoints, so an interrupted run resumes), measured at milestones:
    PSNR on test crops and hold-out photos beside thumbnails, SSIM, and reconstruction FD in fd-pictures-classifier's
    features (which the feat runs train on: their FD is not an independent judge). The final tokenizer is written to
    OUT/ft-NAME/ as a model folder."""
    import copy

    from tokenizer_cli.classifier import load_feature_net
    from tokenizer_cli.fd import extract_features, features_fd, ssim
    from tokenizer_cli.hub import save_pipeline
    from tokenizer_cli.losses import ObjectiveConfig, TokenizerObjective
    from tokenizer_cli.pipeline import load_pipeline
    from tokenizer_cli.evaluate import held_out_metrics
    from tokenizer_cli.train import train_tokenizer, training_record

    objective = ObjectiveConfig(adversarial_start=0, **OBJECTIVES[name])
    model = load_pipeline(args.init, "cpu", load_prior=False).tokenizer
    net, _ = load_feature_net("fd-pictures-classifier")
    train, sets = load_sets(args.eval_images)
    test_features = extract_features(net, sets["test"])
    cells = int(round(model.tokens_per_image ** 0.5))

    # CPU seconds a step of this objective, from a few steps of a throwaway copy
    probe = TokenizerObjective(copy.deepcopy(model), objective, net)
    opt = torch.optim.AdamW(probe.parameters(), lr=args.lr)
    x = to_float(train[: args.batch_size])
    times = []
    for _ in range(4):
        t = time.process_time()
        loss, _ = probe(x, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.process_time() - t)
    per_step = sum(times[1:]) / 3
    steps = max(20, int(args.budget / per_step))
    jsonl = Path(args.out) / f"ft-{name}.jsonl"
    if jsonl.is_file():  # a resumed run keeps the step count (schedule, milestones) it started with
        first = json.loads(jsonl.read_text().splitlines()[0])
        steps, per_step = first["steps"], first["per_step_probe"]
    milestones = sorted({int(steps * f) for f in (0.25, 0.5, 1.0)})
    out = Path(args.out)
    run_dir = out / f"ft-{name}"
    info = {"variant": f"ft-{name}", "init": args.init, **OBJECTIVES[name], "lr": args.lr, "steps": steps,
            "per_step_probe": round(per_step, 4), "batch": args.batch_size, "cpu": cpu_name(),
            "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "tokens": model.tokens_per_image, "layout": model.cfg.layout, "precision": "fp32",
            "params": sum(p.numel() for p in model.parameters())}
    print(json.dumps(info), flush=True)

    @torch.inference_mode()
    def milestone(step: int) -> dict:
        model.eval()
        row = measure(model, sets, cells)
        recon = torch.cat([model.decode_latents(model.quantize(model.latents(b)).z_q).clamp(-1, 1)
                           for b in sets["test"].split(250)])
        row["ssim_test"] = round(float(ssim((recon + 1) / 2, (sets["test"] + 1) / 2).mean()), 4)
        row["fd_test"] = round(features_fd(test_features, extract_features(net, recon)), 2)
        model.train()
        return row

    out.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["step"] for line in jsonl.read_text().splitlines()} if jsonl.is_file() else set()
    if 0 not in done:  # where every objective starts
        with jsonl.open("a") as f:
            f.write(json.dumps({**info, "step": 0, "cpu_seconds": 0.0, **milestone(0)}) + "\n")
    resume = (run_dir / "checkpoints" / "latest").is_file()
    clock = {"cpu": None, "t": time.process_time()}  # training CPU time, milestones not counted

    def on_step(step: int, stats: dict) -> None:
        if clock["cpu"] is None:  # the first step of this process (after a resume: its CPU time estimated)
            clock["cpu"] = (step - 1) * per_step
        clock["cpu"] += time.process_time() - clock["t"]
        if step in milestones and step not in done:
            row = {**info, "step": step, "cpu_seconds": round(clock["cpu"], 1), "loss": round(stats["loss"], 5),
                   **milestone(step)}
            with jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
        clock["t"] = time.process_time()

    cfg = TrainConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, warmup=min(100, steps // 10),
                      seed=args.seed, checkpoint_every=max(1, steps // 8))
    result = train_tokenizer(model, train, cfg, run_dir / "checkpoints", torch.device("cpu"), resume=resume,
                             on_step=on_step, objective=objective, feature_net=net if objective.feature_weight else None)
    data = str(DATA / "train" / "images.npy")
    command = "python scripts/colour_study.py " + " ".join(sys.argv[1:])
    record = training_record(cfg, result, data, "cpu", command=command, objective=objective,
                             feature_net="fd-pictures-classifier", init_from=args.init)
    save_pipeline(run_dir / "model", model.cpu(), name=f"ft-{name}", training=record,
                  metrics=held_out_metrics(model, data, train))
    print(f"wrote {run_dir / 'model'}", flush=True)


def step_times(args) -> None:
    """CPU seconds of one training step of every variant, fp32 and bf16 side by side in one process."""
    x = torch.rand(args.batch_size, 3, 64, 64) * 2 - 1
    print(f"| variant | params | CPU s / step (batch {args.batch_size}) |\n|---|---|---|")
    for name, (tok_settings, lr, precision) in VARIANTS.items():
        torch.manual_seed(0)
        model = Tokenizer(TokenizerConfig(image_size=64, channels=3, tokens=args.tokens, layout=args.layout,
                                          quantizer=QuantizerConfig(**FSQ_1000), **tok_settings))

        def loss(model=model, precision=precision) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                recon, q = model(x)
            return F.mse_loss(recon.float(), x) + q.loss

        per_step = cpu_seconds_per_step(loss, torch.optim.AdamW(model.parameters(), lr=lr))
        print(f"| {name} | {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M | {per_step:.2f} |", flush=True)
    print(f"\nCPU: {cpu_name()} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} thread(s).")


@torch.inference_mode()
def measure_models(names: list[str]) -> None:
    """PSNR of finished models (folders or shipped names) on the test split, its photos apart, and the hold-out
    photographs, each beside the thumbnail with as many cells as the model has tokens (and 8x8)."""
    from tokenizer_cli.pipeline import load_pipeline

    test = np.load(DATA / "test" / "images.npy")
    photo = GROUPS.index("photo")
    sets = {"test": to_float(test), "test photos": to_float(test[np.load(DATA / "test" / "labels.npy") == photo]),
            "hold-out photos": to_float(np.load(DATA / "holdout" / "images.npy"))}
    print("| model | tokens | data | images | PSNR dB | thumbnail, as many cells | thumbnail 8x8 |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        tok = load_pipeline(name, torch.device("cpu"), load_prior=False).tokenizer
        cells = int(round(tok.tokens_per_image ** 0.5))
        for what, x in sets.items():
            recon = torch.cat([tok.decode(tok.encode(b)) for b in x.split(250)])
            print(f"| {name} | {tok.tokens_per_image} | {what} | {len(x):,} | {psnr(recon, x):.2f} | "
                  f"{psnr(thumbnail(x, cells), x):.2f} ({cells}x{cells}) | {psnr(thumbnail(x, 8), x):.2f} |", flush=True)
    print(f"\nData: {DATA} (scripts/prepare_pictures.py); hold-out photographs: in no package of the set.")


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except StopIteration:
        return platform.processor()


def report_objectives(out: Path) -> None:
    """The table of the --init runs in OUT (ft-*.jsonl): each objective at its milestones."""
    rows = [json.loads(line) for f in sorted(out.glob("ft-*.jsonl")) for line in f.read_text().splitlines()]
    print("| objective | step | CPU s | PSNR test | thumbnail | PSNR photos | thumbnail | SSIM test | "
          "recon FD test | codes used |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        terms = " + ".join([f"{r[k]:g} {label}" for k, label in (("adversarial_weight", "adversarial"),
                                                                   ("feature_weight", "feature")) if r.get(k)])
        print(f"| MSE{' + ' + terms if terms else ''} | {r['step']}/{r['steps']} | {r['cpu_seconds']:.0f} | "
              f"{r['psnr_test']:.2f} | {r['thumb_test']:.2f} | {r['psnr_photos']:.2f} | {r['thumb_photos']:.2f} | "
              f"{r['ssim_test']:.4f} | {r['fd_test']:.1f} | {r['codes_used']} |")
    if rows:
        print(f"\nFrom {rows[0]['init']}, lr {rows[0]['lr']:g}, batch {rows[0]['batch']}; CPU: {rows[0]['cpu']} "
              f"({rows[0]['capability']}), {rows[0]['threads']} thread(s) a run.")


def report(out: Path) -> None:
    rows = [json.loads(line) for f in sorted(out.glob("*.jsonl")) if not f.name.startswith("ft-")
            for line in f.read_text().splitlines()]
    if not rows:
        return
    print("| variant | tokens | precision | params | steps | CPU s | PSNR test | thumbnail | PSNR photos | "
          "thumbnail | codes used |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']}{quantizer_tag(r.get('quantizer', 'fsq-1000'), ' ')} | {r['tokens']} {r['layout']} | {r['precision']} | {r['params'] / 1e6:.2f}M | "
              f"{r['step']}/{r['steps']} | {r['cpu_seconds']:.0f} | {r['psnr_test']:.2f} | {r['thumb_test']:.2f} | "
              f"{r.get('psnr_photos', float('nan')):.2f} | {r.get('thumb_photos', float('nan')):.2f} | "
              f"{r['codes_used']} |")
    if rows:
        print(f"\nCPU: {rows[0]['cpu']} ({rows[0]['capability']}), {rows[0]['threads']} thread(s) a run.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="conv32")
    p.add_argument("--budget", type=float, default=600, help="CPU seconds of training per variant")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--quantizer", choices=list(QUANTIZERS), default="fsq-1000")
    p.add_argument("--layout", default="1d")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/colour-study")
    p.add_argument("--report", action="store_true")
    p.add_argument("--step-times", action="store_true", help="time one step of every variant and stop")
    p.add_argument("--measure", nargs="+", metavar="MODEL", help="PSNR of finished models beside thumbnails")
    p.add_argument("--init", metavar="MODEL", help="train this finished model on with --objectives")
    p.add_argument("--objectives", default="mse", help=f"with --init: some of {', '.join(OBJECTIVES)}")
    p.add_argument("--lr", type=float, default=5e-4, help="with --init: peak learning rate")
    args = p.parse_args()
    if args.init:
        for name in args.objectives.split(","):
            if name not in OBJECTIVES:
                sys.exit(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
            run_objective(name, args)
        return
    if args.measure:
        measure_models(args.measure)
        return
    if args.step_times:
        step_times(args)
        return
    if args.report:
        report(Path(args.out))
        report_objectives(Path(args.out))
        return
    for name in args.variants.split(","):
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        run_variant(name, args)


if __name__ == "__main__":
    main()
