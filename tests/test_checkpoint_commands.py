"""`robust_soups evaluate`, `soup` and `select` as a user runs them, on checkpoints made here: a robust_soups
.safetensors file and another project's .pt file (nested, with a `module.` prefix and training metadata)."""
import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from test_cli import run_cli


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    "Two digits classifiers: ours as .safetensors, a peer's as a nested .pt state dict without normalisation buffers."
    from robust_soups.core import seed_everything
    from robust_soups.data import load_digits_splits
    from robust_soups.models import create_model, fit_nominal, save_checkpoint
    folder, digits = tmp_path_factory.mktemp('checkpoints'), load_digits_splits()
    seed_everything(0)
    ours = fit_nominal(create_model('small_cnn', in_chans=1), *digits['train'], epochs=2)
    save_checkpoint(folder / 'ours.safetensors', ours, dataset='digits')
    peer = fit_nominal(create_model('small_cnn', in_chans=1), *digits['train'], epochs=2, seed=1)
    torch.save({'state_dict': {f'module.{k}': v for k, v in peer.state_dict().items()}, 'best_acc': np.float64(.9),
                'args': argparse.Namespace(lr=.05)}, folder / 'peer.pt')
    return folder


IMPORT = ['--architecture', 'small_cnn', '--set', 'in_chans=1', '--normalization', 'none']


def test_evaluate_prints_and_writes_intervals(checkpoints, tmp_path):
    result = run_cli('evaluate', str(checkpoints / 'ours.safetensors'), str(checkpoints / 'peer.pt'), *IMPORT, '--dataset', 'digits',
                     '--threats', 'linf,l1', '--points', '40', '--out', 'table.csv', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "peer.pt: weights taken from 'state_dict'" in result.stderr and 'preset default' in result.stdout
    table = pd.read_csv(tmp_path / 'table.csv', index_col=0)
    assert list(table.index) == ['ours.safetensors', 'peer.pt'] and (table['points'] == 40).all()
    assert {'clean_low', 'linf_high', 'l1', 'union_low'} <= set(table.columns)


def test_soup_writes_weights_lineage_and_model_card(checkpoints, tmp_path):
    result = run_cli('soup', str(checkpoints / 'ours.safetensors'), str(checkpoints / 'peer.pt'), *IMPORT, '--weights', '0.3,0.7',
                     '--out', 'soup.safetensors', '--dataset', 'digits', '--threats', 'linf', '--points', '30', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from robust_soups.models import load_checkpoint
    from robust_soups.own_models import file_sha256
    soup, metadata = load_checkpoint(tmp_path / 'soup.safetensors')
    assert [i['weight'] for i in metadata['soup']['ingredients']] == [.3, .7]
    assert metadata['soup']['ingredients'][1]['sha256'] == file_sha256(checkpoints / 'peer.pt')
    card = (tmp_path / 'soup.md').read_text()
    assert 'preset `default`' in card and 'soup.safetensors' in card and '[' in card  # the robustness table with intervals
    assert isinstance(soup, torch.nn.Module) and soup(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_soup_grid_writes_the_best_soup_per_metric(checkpoints, tmp_path):
    result = run_cli('soup', str(checkpoints / 'ours.safetensors'), str(checkpoints / 'peer.pt'), *IMPORT, '--grid', 'pair', '--grid-step', '0.5',
                     '--out', 'grid', '--dataset', 'digits', '--threats', 'l2', '--points', '30', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '3 soups evaluated' in result.stdout and 'best-union' in result.stdout
    assert sorted(p.name for p in (tmp_path / 'grid').glob('best-*.md')) == ['best-clean.md', 'best-l2.md', 'best-union.md']
    assert 'test points 30 to 60' in (tmp_path / 'grid' / 'best-l2.md').read_text()
    assert len(pd.read_csv(tmp_path / 'grid' / 'grid.csv')) == 3


@pytest.fixture(scope='module')
def adaptation(tmp_path_factory):
    "120 labelled digits under a contrast shift, as a user would keep them: uint8, channels last, in an .npz file."
    from robust_soups.data import corrupt_images, load_digits_splits
    test = load_digits_splits()['test']
    path = tmp_path_factory.mktemp('adaptation') / 'shift.npz'
    images = (corrupt_images(test.x[:120], 'contrast', 3).permute(0, 2, 3, 1) * 255).round().byte().numpy()
    np.savez(path, x=images, y=test.y[:120].numpy().astype(np.int32))
    return path


def test_select_chooses_on_k_and_confirms_on_the_rest(checkpoints, adaptation, tmp_path):
    result = run_cli('select', str(checkpoints / 'ours.safetensors'), str(checkpoints / 'peer.pt'), *IMPORT, '--adaptation', str(adaptation),
                     '-k', '40', '--grid', 'simplex', '--out', 'chosen.safetensors', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'on the other 80' in result.stdout and 'soup − model p_value' in result.stdout
    from robust_soups.models import load_checkpoint
    weights = [i['weight'] for i in load_checkpoint(tmp_path / 'chosen.safetensors')[1]['soup']['ingredients']]
    assert min(weights) >= 0 and abs(sum(weights) - 1) < 1e-9  # a convex soup of the simplex grid
    assert (tmp_path / 'chosen.md').is_file()


@pytest.mark.parametrize('args, message', [
    (['select', '{ours}', '--adaptation', 'missing.npz', '-k', '5', '--out', 's.safetensors'], 'No labelled images at missing.npz'),
    (['select', '{ours}', '--adaptation', '{adaptation}', '-k', '120', '--out', 's.safetensors'], '-k: between 1 and 119'),
    (['select', '{ours}', '--adaptation', '{adaptation}', '-k', '5', '--grid', 'hex', '--out', 's.safetensors'], "--grid: unknown 'hex'"),
    (['evaluate', 'missing.pt', '--dataset', 'digits'], 'No checkpoint at missing.pt'),
    (['evaluate', '{peer}', '--dataset', 'digits', '--preset', 'bogus'], "--preset: unknown 'bogus'"),
    (['evaluate', '{peer}', '--dataset', 'mnist'], "Unknown dataset 'mnist'"),
    (['evaluate', '{peer}', '--dataset', 'digits', '--threats', 'l3'], 'Unknown threat model(s) l3'),
    (['evaluate', '{peer}', '--dataset', 'digits', '--normalization', 'robustbench'], "--normalization: unknown 'robustbench'"),
    (['evaluate', '{peer}', '--dataset', 'digits'], 'holds no input normalisation'),
    (['evaluate', '{peer}', '--dataset', 'digits', '--normalization', 'none'], 'No registered architecture recognises these keys'),
    (['evaluate', '{peer}'], '--dataset: which dataset'),
    (['soup', '{ours}', '{peer}', *IMPORT, '--weights', '1', '--out', 's.safetensors'], '2 checkpoints need 2 weights, got 1'),
    (['soup', '{ours}', '{peer}', *IMPORT, '--weights', 'a,b', '--out', 's.safetensors'], '--weights: comma-separated numbers'),
    (['soup', '{ours}', '{peer}', *IMPORT, '--weights', '.5,.5', '--out', 's.pt'], 'written as NAME.safetensors'),
    (['soup', '{ours}', '{peer}', *IMPORT, '--weights', '.5,.6', '--out', 's.safetensors'], 'must sum to 1'),
    (['soup', '{ours}', '{peer}', *IMPORT, '--out', 's.safetensors'], '--weights: one weight per checkpoint'),
    (['soup', '{ours}', '{peer}', *IMPORT, '--grid', 'simplex', '--out', 's'], '--grid: a grid is chosen from on data'),
    (['soup', '{ours}', '{ours}', '{peer}', *IMPORT, '--grid', 'pair', '--out', 's', '--dataset', 'digits'], 'The pair grid mixes two checkpoints, got 3'),
    (['soup', '{ours}', '{peer}', *IMPORT, '--grid', 'simplex', '--out', 's', '--dataset', 'digits', '--points', '300'], 'digits has 360 test points; points 300 to 600'),
    (['evaluate', '{peer}', '--dataset', 'digits', '--points', '1000'], '--points: between 1 and the 360 test points of digits'),
])
def test_bad_checkpoint_commands_fail_with_one_line(checkpoints, adaptation, tmp_path, args, message):
    args = [a.format(ours=checkpoints / 'ours.safetensors', peer=checkpoints / 'peer.pt', adaptation=adaptation) for a in args]
    result = run_cli(*args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) >= 1 and lines[-1].startswith('robust_soups:') and 'Traceback' not in result.stderr, result.stderr
    assert message in lines[-1], lines[-1]
    assert not (tmp_path / 's.safetensors').exists()


TINY_RUN = ['--set', 'epochs=1', '--set', 'finetune_epochs=1', '--set', 'eval.points=40', '--set', 'eval.pair_step=0.5',
            '--set', 'eval.simplex_step=0.5', '--set', 'eval.extrapolation=[-0.5, 1.5, 0.5]', '--set', 'shifts.corruptions=[contrast]',
            '--set', 'shifts.severities=[3]', '--set', 'shifts.points=60', '--set', 'shifts.selection=30', '--set', 'shifts.grid_step=0.5',
            '--set', 'shifts.ks=[10]', '--set', 'shifts.trials=2', '--set', 'baselines=[]', '--no-progress']
RUN_IMPORTS = ['--set', 'imports.architecture=small_cnn', '--set', 'imports.arguments={in_chans: 1}', '--set', 'imports.normalization=[[0.5], [0.25]]']


def test_run_from_a_users_base_checkpoint_fine_tunes_it(checkpoints, tmp_path):
    "`--set base_checkpoint=FILE`: θ_base is the user's model (a nested .pt), imported, never trained; the fine-tunes start from it."
    result = run_cli('run', 'demo', '--out', 'out', '--set', f"base_checkpoint={checkpoints / 'peer.pt'}", *RUN_IMPORTS, *TINY_RUN, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    from robust_soups.models import import_model, load_checkpoint
    stage = lambda name: next((tmp_path / 'out' / 'stages').glob(f'{name}-*'))
    base, metadata = load_checkpoint(stage('train') / 'linf' / 'best.safetensors')
    assert metadata['imported_from'] == str(checkpoints / 'peer.pt') and metadata['threats'][0]['norm'] == 'linf'
    original = import_model(checkpoints / 'peer.pt', 'small_cnn', ((.5,), (.25,)), in_chans=1)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad(): assert torch.equal(base(x), original(x))
    finetuned = load_checkpoint(stage('finetune') / 'linf-l2' / 'best.safetensors')[1]
    assert (tmp_path / finetuned['parent']).resolve() == (stage('train') / 'linf' / 'best.safetensors').resolve()
    assert json.loads((stage('train') / 'done.json').read_text())['imported'] == str(checkpoints / 'peer.pt')


def test_run_with_a_folder_of_pt_checkpoints(checkpoints, tmp_path):
    "`--set checkpoints=FOLDER` reads every ingredient in any format the importer reads (here .pt state dicts)."
    from robust_soups.models import create_model
    folder = tmp_path / 'ingredients'
    folder.mkdir()
    for i, name in enumerate(['linf', 'linf-l2', 'linf-l1', 'linf-nominal']):
        torch.manual_seed(i)
        torch.save({'model_state_dict': create_model('small_cnn', in_chans=1).state_dict()}, folder / f'{name}.pt')
    result = run_cli('run', 'demo', '--out', 'out', '--set', f'checkpoints={folder}', *RUN_IMPORTS, *TINY_RUN, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert next((tmp_path / 'out' / 'stages').glob('finetune-*/linf-l1/best.safetensors')).is_file()
    bad = run_cli('run', 'demo', '--out', 'bad', '--set', f'checkpoints={folder}', '--check', cwd=tmp_path)  # no imports: normalisation unknown
    assert bad.returncode == 2 and bad.stderr.strip().startswith('robust_soups: imports: linf.pt:') and 'holds no input normalisation' in bad.stderr
