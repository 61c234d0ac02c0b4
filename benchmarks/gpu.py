"""Paper-scale costs on one GPU, measured side by side in one run and written with the device's name (issue 17):

- APGD evaluation (DLR for l_inf/l_2, CE for l_1): our time / pyautoattack's `APGDAttack` time on the same points,
  in float32, with bfloat16 autocast (examples re-verified in float32), and with both plus `fast_model` (channels-last,
  torch.compile per bucket of batch sizes), with each robust accuracy. Goal <= 0.33.
- Soup grid: G soups on M points, written in place (`predict_soups`) and batched (`predict_soups_batched`),
  each / G plain forward passes. Goal <= 1.05.
- Adversarial training: images per second with S-step APGD, and its time / (S + 1) plain training passes, in float32
  and with the recipe's bfloat16 + compile path (compilation included: one epoch per repeat). Goal <= 1.1.

    python benchmarks/gpu.py [--model wide_resnet_28_10] [--points 1000] [--steps 40] [--out benchmarks/results/gpu.json]

Without CUDA it says so and exits 0; `--device cpu` runs the same measurements on the CPU (e.g. with
`--model small_resnet --points 64 --compile-backend aot_eager` as a smoke test of the script). The weights are random unless --checkpoint is
given: the ratios are costs, and robust accuracy is reported so that "faster" never means "weaker".
"""
import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from dataclasses import replace

from robust_soups.attacks import apgd_run, attack_precision, fast_model, reference_apgd
from robust_soups.core import atomic_write_json, seed_everything, shared_data_path
from robust_soups.data import load_cifar10_subset
from robust_soups.models import create_model, load_checkpoint, predict
from robust_soups.soups import SoupEvaluator, predict_soups, predict_soups_batched, simplex_grid
from robust_soups.threats import threat_models
from robust_soups.training import get_recipe, train

LOSSES = {'linf': 'dlr', 'l2': 'dlr', 'l1': 'ce'}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads'


def timed(fn, device):
    if device.type == 'cuda': torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == 'cuda': torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def median_ratio(a, b): return statistics.median(a) / statistics.median(b)


def attacks(model, x, y, steps, repeats, device, backend):
    "Per threat: time of our APGD (fp32, bf16, bf16 on `fast_model`) over the reference's, and the robust accuracy (%) each leaves."
    fast = fast_model(model, channels_last=True, compile=True, backend=backend, max_batch=len(x))
    variants = {'fp32': ('fp32', model), 'bf16': ('bf16', model), 'fast': ('bf16', fast)}
    rows = []
    for name, threat in threat_models('cifar10').items():
        times = {'reference': [], **{k: [] for k in variants}}
        accuracy = {}
        with attack_precision('bf16', device): apgd_run(fast, x, y, threat, n_iter=2, loss=LOSSES[name])  # compile outside the clock
        for _ in range(repeats):  # interleaved: drifts in load hit all alike
            t, adv = timed(lambda: reference_apgd(model, x, y, threat, n_iter=steps, loss=LOSSES[name]), device)
            times['reference'].append(t); accuracy['reference'] = adv
            for variant, (precision, attacked) in variants.items():
                def ours():
                    with attack_precision(precision, device): return apgd_run(attacked, x, y, threat, n_iter=steps, loss=LOSSES[name]).x_adv
                t, adv = timed(ours, device)
                times[variant].append(t); accuracy[variant] = adv
        robust = {k: 100 * (predict(model, adv.float()) == y).float().mean().item() for k, adv in accuracy.items()}  # float32 re-verification
        rows.append({'threat': name, **{f'{k}_robust_%': v for k, v in robust.items()},
                     **{f'{k}_over_reference': median_ratio(times[k], times['reference']) for k in variants}})
    return rows


def soups(model_name, kwargs, x, grid_step, repeats, device):
    "G soups of three random ingredients on M points, in place and batched, each over G plain forward passes."
    ingredients = {name: create_model(model_name, **kwargs).to(device).eval() for name in 'abc'}
    grid, evaluator = simplex_grid(3, grid_step), SoupEvaluator(ingredients, create_model(model_name, **kwargs).to(device))
    plain, in_place, batched = [], [], []
    for _ in range(repeats):
        with torch.no_grad(): plain.append(timed(lambda: [torch.cat([ingredients['a'](c) for c in x.split(512)]) for _ in grid], device)[0])
        in_place.append(timed(lambda: predict_soups(evaluator, grid, x, show_progress=False), device)[0])
        batched.append(timed(lambda: predict_soups_batched(evaluator, grid, x, show_progress=False), device)[0])
    return {'soups': len(grid), 'points': len(x), 'in_place_over_plain': median_ratio(in_place, plain), 'batched_over_plain': median_ratio(batched, plain)}


def training(model_name, kwargs, data, steps, repeats, device, backend):
    "One epoch of l_inf adversarial training (float32, and bfloat16 + compile) over one epoch of plain training, and images per second."
    threat, recipe = threat_models('cifar10')['linf'], get_recipe('cifar10-subset', epochs=1, attack_steps=(('linf', steps),))
    adversarial, fast, plain = [], [], []
    for _ in range(repeats):
        model = create_model(model_name, **kwargs).to(device)
        adversarial.append(timed(lambda: train(model, data, threat, recipe, device=device, show_progress=False), device)[0])
        model = create_model(model_name, **kwargs).to(device)
        fast.append(timed(lambda: train(model, data, threat, replace(recipe, precision='bf16', compile=backend), device=device, show_progress=False), device)[0])
        model = create_model(model_name, **kwargs).to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=.01, momentum=.9)
        def epoch():
            for i in range(0, len(data.x), recipe.batch_size):
                xb, yb = data.x[i:i + recipe.batch_size].to(device), data.y[i:i + recipe.batch_size].to(device)
                loss = F.cross_entropy(model(xb), yb); optimizer.zero_grad(); loss.backward(); optimizer.step()
        plain.append(timed(epoch, device)[0])
    return {'steps': steps, 'images': len(data.x), 'images_per_second': len(data.x) / statistics.median(adversarial),
            'over_steps_plus_one_plain': statistics.median(adversarial) / ((steps + 1) * statistics.median(plain)),
            'images_per_second_bf16_compiled': len(data.x) / statistics.median(fast),
            'bf16_compiled_over_steps_plus_one_plain': statistics.median(fast) / ((steps + 1) * statistics.median(plain))}


def main(model='wide_resnet_28_10', checkpoint=None, points=1000, steps=40, train_points=2048, train_steps=10, grid_step=.1,
         repeats=3, device=None, compile_backend='inductor', out='benchmarks/results/gpu.json'):
    if device is None and not torch.cuda.is_available():
        print('benchmarks/gpu.py: skipped, no CUDA device here (run it where one is, or pass --device cpu for a CPU smoke run).')
        return
    device, path = torch.device(device or 'cuda'), shared_data_path('cifar10_subset.npz')
    if path is None: raise SystemExit('benchmarks/gpu.py: needs the shared CIFAR-10 subset (shared/data/cifar10_subset.npz).')
    seed_everything(0)
    data, kwargs = load_cifar10_subset(path), {}
    net = load_checkpoint(checkpoint)[0] if checkpoint else create_model(model, **kwargs)
    net = net.to(device).eval()
    x, y = (t.to(device) for t in data['test'].head(points))
    result = {'device': device_name(device), 'model': model if not checkpoint else checkpoint, 'torch': torch.__version__,
              'compile_backend': compile_backend, 'points': points, 'steps': steps, 'repeats': repeats}
    sections = {'attacks': lambda: attacks(net, x, y, steps, repeats, device, compile_backend),
                'soups': lambda: soups(model, kwargs, x, grid_step, repeats, device),
                'training': lambda: training(model, kwargs, data['train'].head(train_points), train_steps, repeats, device, compile_backend)}
    for name, measure in sections.items():  # written after each: a slot that ends early keeps what was measured
        result[name] = measure()
        atomic_write_json(out, result)
        print(f'benchmarks/gpu.py: {name} measured', flush=True)
    print(f"{result['device']}: {model}, {points} points, {steps} APGD steps, median of {repeats} interleaved runs")
    for r in result['attacks']:
        print(f"  APGD {r['threat']:4}: / reference: fp32 {r['fp32_over_reference']:.2f}, bf16 {r['bf16_over_reference']:.2f}, "
              f"bf16 + channels-last + compile {r['fast_over_reference']:.2f} (goal <= 0.33); robust % reference {r['reference_robust_%']:.1f}, "
              f"fp32 {r['fp32_robust_%']:.1f}, bf16 {r['bf16_robust_%']:.1f}, fast {r['fast_robust_%']:.1f}")
    s, t = result['soups'], result['training']
    print(f"  soups: {s['soups']} soups on {s['points']} points: in place {s['in_place_over_plain']:.2f}, batched {s['batched_over_plain']:.2f} x plain passes (goal <= 1.05)")
    print(f"  training: {t['images_per_second']:.0f} images/s with {t['steps']}-step APGD, {t['over_steps_plus_one_plain']:.2f} x (steps + 1) plain passes (goal <= 1.1); "
          f"bf16 + compile: {t['images_per_second_bf16_compiled']:.0f} images/s, {t['bf16_compiled_over_steps_plus_one_plain']:.2f} x")
    atomic_write_json(out, result)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='wide_resnet_28_10')
    parser.add_argument('--checkpoint', default=None, help='a robust_soups checkpoint instead of random weights')
    parser.add_argument('--points', type=int, default=1000)
    parser.add_argument('--steps', type=int, default=40)
    parser.add_argument('--train-points', type=int, default=2048)
    parser.add_argument('--train-steps', type=int, default=10)
    parser.add_argument('--grid-step', type=float, default=.1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default=None, help='default: cuda (skipped without it)')
    parser.add_argument('--compile-backend', default='inductor', help="torch.compile's backend ('aot_eager' for a quick CPU smoke run)")
    parser.add_argument('--out', default='benchmarks/results/gpu.json')
    main(**vars(parser.parse_args()))
