"""The `robust_soups` command as a user runs it: a subprocess, from a clean working directory."""
import json
import shutil
import subprocess
import sys

import pandas as pd


def run_cli(*args, cwd):
    exe = shutil.which('robust_soups') or str(__import__('pathlib').Path(sys.executable).parent / 'robust_soups')
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_demo_end_to_end(tmp_path):
    result = run_cli('run', 'demo', '--epochs', '3', '--points', '60', '--no-progress', '--out', 'out', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if 'union' in line and 'clean' in line)
    assert header.split() == ['model', 'points', 'clean', 'linf', 'l2', 'l1', 'union']
    table = pd.read_csv(tmp_path / 'out' / 'robustness.csv')
    row = table.iloc[0]
    assert row['points'] == 60
    assert 0 <= row['union'] <= min(row['linf'], row['l2'], row['l1']) <= max(row['linf'], row['l2'], row['l1']) <= row['clean']
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert results['config'] == 'demo' and results['robustness'][0]['union'] == row['union']


def test_demo_writes_under_runs_by_default(tmp_path):
    result = run_cli('run', 'demo', '--epochs', '1', '--points', '10', '--no-progress', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'runs' / 'demo' / 'results.json').is_file()


def test_unknown_config_is_a_clear_error(tmp_path):
    result = run_cli('run', 'imagenet-xl', cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'imagenet-xl'" in result.stderr and 'demo' in result.stderr
