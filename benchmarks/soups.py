"""Cost of evaluating many soups: G soups on M points through `SoupEvaluator` (weights rewritten in place)
and, for comparison, the naive way (deepcopy + load_state_dict per soup), each divided by the time of G
plain forward passes of one model over the same M points. Goal (issue 5): <= 1.05 for the in-place way.
Measured side by side in one run (interleaved, median of repeats).

    python benchmarks/soups.py [--points 1000] [--repeats 3] [--out benchmarks/results/soups.json]
"""
import argparse
import copy
import statistics
import time

import torch

from robust_soups.core import atomic_write_json, seed_everything, shared_data_path
from robust_soups.data import load_cifar10_subset, load_digits_splits
from robust_soups.models import create_model
from robust_soups.soups import SoupEvaluator, mix_states, predict_soups, simplex_grid, check_weights


def setup(points):
    path = shared_data_path('cifar10_subset.npz')
    if path is None: return 'digits', 'small_cnn', {'in_chans': 1}, load_digits_splits()['test'].x[:points]
    return 'cifar10-subset', 'small_resnet', {}, load_cifar10_subset(path)['test'].x[:points]


@torch.no_grad()
def plain(model, x, grid, batch_size=512):
    start = time.perf_counter()
    for _ in grid: torch.cat([model(chunk) for chunk in x.split(batch_size)])
    return time.perf_counter() - start


@torch.no_grad()
def naive(ingredients, x, grid, batch_size=512):
    start = time.perf_counter()
    states = [m.state_dict() for m in ingredients.values()]
    for w in grid:
        soup = copy.deepcopy(ingredients['a']); soup.load_state_dict(mix_states(states, check_weights(w, len(states)))); soup.eval()
        torch.cat([soup(chunk) for chunk in x.split(batch_size)])
    return time.perf_counter() - start


def in_place(ingredients, model, x, grid):
    start = time.perf_counter()
    predict_soups(SoupEvaluator(ingredients, model), grid, x, show_progress=False)
    return time.perf_counter() - start


def main(points=1000, repeats=3, out='benchmarks/results/soups.json'):
    dataset, arch, kwargs, x = setup(points)
    seed_everything(0)
    ingredients = {name: create_model(arch, **kwargs).eval() for name in 'abc'}
    model = create_model(arch, **kwargs).eval()
    grid = simplex_grid(3, .2)
    times = {'plain': [], 'in_place': [], 'naive': []}
    for _ in range(repeats):
        times['plain'].append(plain(model, x, grid))
        times['in_place'].append(in_place(ingredients, model, x, grid))
        times['naive'].append(naive(ingredients, x, grid))
    base = statistics.median(times['plain'])
    ratios = {k: statistics.median(v) / base for k, v in times.items() if k != 'plain'}
    print(f'{dataset}, {arch}: {len(grid)} soups on {len(x)} points, median of {repeats} interleaved runs, {torch.get_num_threads()} threads')
    print(f"in place (SoupEvaluator) / plain forward passes: {ratios['in_place']:.3f}  goal <= 1.05: {'met' if ratios['in_place'] <= 1.05 else 'NOT met'}")
    print(f"naive (deepcopy + load_state_dict) / plain:      {ratios['naive']:.3f}")
    atomic_write_json(out, {'dataset': dataset, 'model': arch, 'soups': len(grid), 'points': len(x), 'ratios': ratios})


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--points', type=int, default=1000)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default='benchmarks/results/soups.json')
    main(**vars(parser.parse_args()))
