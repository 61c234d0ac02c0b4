"""The `robust_soups` command as a user runs it: a subprocess from a clean working directory, on a tiny override
of the demo configuration (a few epochs, a few points, one corruption)."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

TINY = ['--set', 'epochs=3', '--set', 'finetune_epochs=1', '--set', 'eval.points=60', '--set', 'eval.pair_step=0.5',
        '--set', 'eval.simplex_step=0.5', '--set', 'eval.extrapolation=[-0.5, 1.5, 0.5]', '--set', 'shifts.corruptions=[contrast]',
        '--set', 'shifts.severities=[3]', '--set', 'shifts.points=120', '--set', 'shifts.selection=60', '--set', 'shifts.grid_step=0.5',
        '--set', 'shifts.ks=[10, 30]', '--set', 'shifts.trials=5', '--no-progress']


def executable(name):
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def run_cli(*args, cwd, launcher=None):
    return subprocess.run((launcher or [executable('robust_soups')]) + list(args), cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    "One uninterrupted run of the tiny demo (default output folder), shared by the tests below."
    cwd = tmp_path_factory.mktemp('demo')
    return run_cli('run', 'demo', *TINY, cwd=cwd), cwd / 'runs' / 'demo'


def test_demo_end_to_end_writes_the_report_under_runs(demo_run):
    result, out = demo_run
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith('✓') and 'done' in line] == \
        ['train', 'finetune', 'baselines', 'soups', 'shifts', 'report']
    header = next(line for line in result.stdout.splitlines() if 'union' in line and 'clean' in line)
    assert header.split() == ['clean', 'linf', 'l2', 'l1', 'union', 'shifts', '(mean)']
    models = pd.read_csv(out / 'models.csv', index_col=0)
    assert list(models.index) == ['linf', 'linf-l1', 'linf-l2', 'linf-nominal', 'max-linf-l1', 'nominal', 'sat-linf-l1']
    assert (models['points'] == 60).all()
    assert ((models['union'] <= models[['linf', 'l2', 'l1']].min(axis=1)) & (models[['linf', 'l2', 'l1']].max(axis=1) <= models['clean'])).all()
    report = (out / 'report.md').read_text()
    for figure in ('fronts', 'simplex', 'extrapolation', 'data_efficiency', 'composition'):
        assert f'({figure}.png)' in report and (out / f'{figure}.png').stat().st_size > 1000, figure
    table = pd.read_csv(out / 'table1.csv', index_col=0)
    assert {'dataset-specific-soups', 'single-soup', 'linf', 'nominal', 'ensemble:nominal+linf'} <= set(table.index)  # structured ids
    assert table.loc['single-soup', 'forward_passes'] == 1 and table.loc['ensemble:nominal+linf', 'forward_passes'] == 2
    assert '| single soup | ×1 |' in report and '| ensemble θ_nominal + θ_∞ | ×2 |' in report  # labels where people read
    assert json.loads((out / 'config.json').read_text())['config']['eval']['points'] == 60
    claims = result.stdout.split("The paper's claims, paired tests on 60 test points")[1]
    assert 'θ_∞→2 > θ_∞ in l2' in claims and 'θ_∞→nominal > θ_∞ in clean' in claims and "## The paper's claims, tested" in report


def test_clear_errors(tmp_path):
    result = run_cli('run', 'demo', '--force', 'training', cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'training'" in result.stderr


BAD_CONFIGURATIONS = {  # what a user typed -> what the one line must say
    ('imagenet-xl',): "Unknown configuration 'imagenet-xl'; shipped: cifar10, cifar10-subset, cifar10-subset-gpu, demo, imagenet",
    ('demo', '--set', 'eval.pionts=3'): "Unknown configuration key 'eval.pionts'; valid keys:",
    ('demo', '--set', 'seed=abc'): "seed: Input should be a valid integer (got 'abc')",
    ('demo', '--set', 'seed=1.5'): 'seed: Input should be a valid integer',
    ('demo', '--set', 'base=l3'): "base: unknown threat model 'l3'; allowed: linf, l2, l1",
    ('demo', '--device', 'cuda'): "device: Device 'cuda' was asked for but CUDA is not available",
    ('demo', '--device', 'gpu'): "device: unknown device 'gpu'",
    ('demo', '--set', 'eval.points=-5'): 'eval.points: Input should be greater than or equal to 1 (got -5)',
    ('demo', '--set', 'eval.points=100000'): 'eval.points: digits has 360 test points, got 100000',
    ('demo', '--set', 'eval.preset=bogus'): "eval.preset: unknown attack preset 'bogus'; allowed: default, strong, autoattack",
    ('demo', '--set', 'targets=[l2, l2]'): 'targets: must not repeat, got l2 twice',
    ('demo', '--set', 'targets=[linf, l2]'): "targets: must differ from base 'linf'",
    ('demo', '--set', 'targets=[]'): 'targets: needs at least one target threat model',
    ('demo', '--set', 'baselines=[[linf, nominal]]'): "baselines: unknown threat model 'nominal'; allowed: linf, l2, l1",
    ('demo', '--set', 'baselines=[[linf]]'): 'baselines: each baseline (MAX, SAT) combines at least two threat models',
    ('demo', '--set', 'shifts.held_out=100000'): "Unknown configuration key 'shifts.held_out'",
    ('demo', '--set', 'shifts.selection=100000'): 'shifts.selection: must leave held-out points, so below the 360 points per shift',
    ('demo', '--set', 'shifts.ks=[10, 500]'): 'shifts.ks: every k must be at most shifts.selection = 180',
    ('demo', '--set', 'shifts.corruptions=[fgo]'): "shifts.corruptions: unknown corruption 'fgo'",
    ('demo', '--set', 'shifts.severities=[6]'): 'shifts.severities.0: Input should be less than or equal to 5 (got 6)',
    ('demo', '--set', 'epochs=0'): 'epochs: must be a positive number of epochs, got 0',
    ('demo', '--set', 'model=resnet9000'): "model: unknown model 'resnet9000'; allowed: small_cnn",
    ('demo', '--set', 'recipe=fast'): "recipe: unknown recipe 'fast'; allowed:",
    ('demo', '--set', 'dataset=mnist'): "dataset: unknown dataset 'mnist'; allowed: digits, cifar10-subset, cifar10, imagenet",
    ('demo', '--set', 'eval.extrapolation=[1, 0, 0.1]'): 'eval.extrapolation: needs low < high',
    ('demo', '--set', 'seed'): "override 'seed' is not KEY=VALUE",
    ('demo', '--set', 'eval.points=[1'): '--set eval.points: \'[1\' is not a YAML value',
    ('cifar10', '--set', 'requires_gpu=false'): 'needs --data-root PATH: download the official CIFAR-10',
    ('cifar10-subset', '--data-root', '/nowhere.npz'): 'No file at /nowhere.npz: download the project',
    ('demo', '--set', 'checkpoints=/nowhere'): 'No checkpoint folder at /nowhere',
    ('demo', '--set', 'targets=[nominal]'): 'targets: needs at least one l_p threat model besides nominal',
    ('demo', '--set', 'model_kwargs={bogus: 1}'): "model_kwargs: small_cnn takes no 'bogus'; it takes num_classes",
    ('demo', '--set', 'eval.pair_step=true'): 'eval.pair_step: must be a number, got True',
    ('demo', '--device', 'mps'): "device: unknown device 'mps'; allowed: cpu, cuda, cuda:N",
    ('demo', '--device', 'cuda:7'): 'cuda:7',
    ('demo', '--set', 'shifts.root=/data/CIFAR-10-C'): 'digits builds its own shifts',
    ('BROKEN_YAML',): 'is not valid YAML at line 3',
}


@pytest.mark.parametrize('args', list(BAD_CONFIGURATIONS), ids=lambda a: ' '.join(a))
def test_bad_configuration_fails_fast_with_one_line(tmp_path, args):
    import torch
    if args[1:] == ('--device', 'cuda') and torch.cuda.is_available(): pytest.skip('this machine has CUDA')
    if args[1:] == ('--device', 'cuda:7') and torch.cuda.device_count() > 7: pytest.skip('this machine has 8 CUDA devices')
    if args == ('BROKEN_YAML',):
        (tmp_path / 'broken.yaml').write_text('dataset: digits\nmodel: [small_cnn\n')
        args = (str(tmp_path / 'broken.yaml'),)
    result = run_cli('run', *args, cwd=tmp_path)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith('robust_soups: ') and 'Traceback' not in result.stderr, result.stderr
    assert BAD_CONFIGURATIONS[tuple(a if a != str(tmp_path / 'broken.yaml') else 'BROKEN_YAML' for a in args)] in lines[0], lines[0]
    assert not (tmp_path / 'runs').exists()  # refused before any work: nothing ran (no wall-clock bound: on a loaded machine a start alone passes 10 s)


def test_check_prints_the_resolved_configuration_and_runs_nothing(tmp_path):
    import yaml
    result = run_cli('run', 'demo', '--check', '--set', 'eval.points=50', '--set', 'workers=1', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config['eval']['points'] == 50 and config['workers'] == 1 and config['shifts']['root'] is None and config['name'] == 'demo'
    assert not (tmp_path / 'runs').exists()


def test_sigkill_mid_run_then_resume_recomputes_nothing_finished(tmp_path, demo_run):
    (tmp_path / 'killed').mkdir()
    whole, whole_out = demo_run
    assert whole.returncode == 0, whole.stderr
    process = subprocess.Popen([executable('robust_soups'), 'run', 'demo', *TINY, '--out', 'out'], cwd=tmp_path / 'killed',
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stages = tmp_path / 'killed' / 'out' / 'stages'
    deadline = time.time() + 600
    while not list(stages.glob('finetune-*/done.json')) and time.time() < deadline and process.poll() is None: time.sleep(.05)
    process.send_signal(signal.SIGKILL); process.wait()
    assert list(stages.glob('finetune-*/done.json')) and not list(stages.glob('report-*/done.json')), 'killed too late to test resuming'
    finished = {p.parent.name: p.stat().st_mtime_ns for p in stages.glob('*/done.json')}
    resumed = run_cli('run', 'demo', *TINY, '--out', 'out', cwd=tmp_path / 'killed')
    assert resumed.returncode == 0, resumed.stderr
    skipped = [line.split()[1] for line in resumed.stdout.splitlines() if 'skipped' in line]
    assert skipped[:2] == ['train', 'finetune'] and 'report' not in skipped
    assert all((stages / name / 'done.json').stat().st_mtime_ns == t for name, t in finished.items())  # finished stages untouched
    for table in ('models.csv', 'fronts.csv', 'table1.csv', 'efficiency.csv'):
        assert (tmp_path / 'killed' / 'out' / table).read_bytes() == (whole_out / table).read_bytes(), table


def test_torchrun_two_processes(tmp_path):
    result = run_cli('run', 'demo', *TINY, '--set', 'model_kwargs={in_chans: 1, norm_layer: group}', '--out', 'out', cwd=tmp_path,
                     launcher=[executable('torchrun'), '--standalone', '--nproc_per_node=2', '-m', 'robust_soups'])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('Summary') == 1  # rank 0 reports
    assert (tmp_path / 'out' / 'report.md').is_file()
