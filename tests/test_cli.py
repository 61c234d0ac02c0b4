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
    assert {'dataset-specific soups', 'single soup', 'θ_∞', 'θ_nominal', 'ensemble θ_nominal + θ_∞'} <= set(table.index) and table.loc['single soup', '# forward passes'] == '×1'
    assert json.loads((out / 'config.json').read_text())['config']['eval']['points'] == 60
    claims = result.stdout.split("The paper's claims, paired tests on 60 test points")[1]
    assert 'θ_∞→2 > θ_∞ in l2' in claims and 'θ_∞→nominal > θ_∞ in clean' in claims and "## The paper's claims, tested" in report


def test_clear_errors(tmp_path):
    result = run_cli('run', 'imagenet-xl', cwd=tmp_path)
    assert result.returncode == 2 and "Unknown configuration 'imagenet-xl'; shipped: cifar10, cifar10-subset, demo, imagenet" in result.stderr
    result = run_cli('run', 'demo', '--set', 'eval.pionts=3', cwd=tmp_path)
    assert result.returncode == 2 and "Unknown configuration key 'eval.pionts'; valid keys:" in result.stderr
    result = run_cli('run', 'cifar10', '--set', 'requires_gpu=false', cwd=tmp_path)
    assert result.returncode == 2 and 'needs --data-root PATH: download the official CIFAR-10' in result.stderr
    result = run_cli('run', 'demo', '--force', 'training', cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'training'" in result.stderr


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
    result = run_cli('run', 'demo', *TINY, '--set', 'model_kwargs={in_chans: 1, norm: group}', '--out', 'out', cwd=tmp_path,
                     launcher=[executable('torchrun'), '--standalone', '--nproc_per_node=2', '-m', 'robust_soups'])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('Summary') == 1  # rank 0 reports
    assert (tmp_path / 'out' / 'report.md').is_file()
