"""Time of our APGD evaluation against the reference APGD (pyautoattack's APGDAttack), per norm, and of the
union cascade against all attacks on all points. Everything is measured side by side in one run and
reported as ratios (this machine is noisy: absolute seconds mean little).

    python benchmarks/attacks.py [--points 500] [--steps 40] [--repeats 3] [--out benchmarks/results/attacks.json]

Uses a small CNN trained for a few epochs on the shared CIFAR-10 subset (digits when it is absent), at a
quarter of the paper's CIFAR-10 radii so that robust accuracy is neither 0 nor clean accuracy.
Goal (issue 2): our time <= 0.8 x the reference at robust accuracy within 1 point.
"""
import argparse
import statistics
import time

import torch

from robust_soups.attacks import apgd, reference_apgd, robustness_flags
from robust_soups.core import atomic_write_json, seed_everything, shared_data_path
from robust_soups.data import load_cifar10_subset, load_digits_splits
from robust_soups.models import create_model, fit_nominal, predict
from robust_soups.threats import threat_models

LOSSES = {'linf': 'dlr', 'l2': 'dlr', 'l1': 'ce'}


def setup():
    "A trained model, test points and threat models."
    seed_everything(0)
    path = shared_data_path('cifar10_subset.npz')
    if path is None:
        data = load_digits_splits()
        model = fit_nominal(create_model('small_cnn', in_chans=1), *data['train'], epochs=8)
        return 'digits', model, data['test'], threat_models('digits')
    data = load_cifar10_subset(path)
    model = fit_nominal(create_model('small_cnn', in_chans=3, mean=(.49, .48, .45), std=(.25, .24, .26)),
                        *data['train'], epochs=4, batch_size=128)
    return 'cifar10-subset', model, data['test'], threat_models('cifar10', scale=.25)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(points=500, steps=40, repeats=3, out='benchmarks/results/attacks.json'):
    dataset, model, test, threats = setup()
    x, y = test.head(points)
    rows = []
    for norm, threat in threats.items():
        ours_t, ref_t = [], []
        for _ in range(repeats):  # interleaved so that drifts in machine load hit both alike
            t, ref_adv = timed(lambda: reference_apgd(model, x, y, threat, n_iter=steps, loss=LOSSES[norm]))
            ref_t.append(t)
            t, our_adv = timed(lambda: apgd(model, x, y, threat, n_iter=steps, loss=LOSSES[norm]))
            ours_t.append(t)
        acc = lambda adv: 100 * (predict(model, adv) == y).float().mean().item()
        rows.append({'norm': norm, 'eps': threat.eps, 'ours_acc': acc(our_adv), 'reference_acc': acc(ref_adv),
                     'time_ratio': statistics.median(ours_t) / statistics.median(ref_t)})
    all_t, cascade_t = [], []
    for _ in range(repeats):
        t, full = timed(lambda: robustness_flags(model, x, y, threats)); all_t.append(t)
        t, cascaded = timed(lambda: robustness_flags(model, x, y, threats, cascade=True)); cascade_t.append(t)
    union = {'all_on_all_union': 100 * full['union'].float().mean().item(),
             'cascade_union': 100 * cascaded['union'].float().mean().item(),
             'time_ratio': statistics.median(cascade_t) / statistics.median(all_t)}
    print(f'{dataset}: {len(x)} points, {steps} steps, median of {repeats} interleaved runs, {torch.get_num_threads()} threads')
    print(f"{'norm':5} {'eps':>8} {'ours %':>7} {'ref %':>7} {'acc diff':>8} {'time ours/ref':>13}  goal <= 0.80 at |diff| <= 1")
    for r in rows:
        diff = r['ours_acc'] - r['reference_acc']
        ok = 'met' if r['time_ratio'] <= .8 and abs(diff) <= 1 else 'NOT met'
        print(f"{r['norm']:5} {r['eps']:8.4f} {r['ours_acc']:7.2f} {r['reference_acc']:7.2f} {diff:8.2f} {r['time_ratio']:13.3f}  {ok}")
    print(f"union: cascade / all-on-all time ratio {union['time_ratio']:.3f}; union robust accuracy "
          f"{union['cascade_union']:.2f}% (cascade) vs {union['all_on_all_union']:.2f}% (all-on-all)")
    atomic_write_json(out, {'dataset': dataset, 'points': len(x), 'steps': steps, 'repeats': repeats,
                            'threads': torch.get_num_threads(), 'per_norm': rows, 'union': union})


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--points', type=int, default=500)
    parser.add_argument('--steps', type=int, default=40)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default='benchmarks/results/attacks.json')
    main(**vars(parser.parse_args()))
