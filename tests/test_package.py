"""What a fresh install must give: the pinned versions, importable modules, and a README that says how."""
import configparser
import importlib
import os
import re
import sys

import pytest


def settings(root):
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(root / 'settings.ini')
    return cfg['DEFAULT']


def test_version_matches_settings(root):
    import robust_soups
    assert robust_soups.__version__ == settings(root)['version']


@pytest.mark.parametrize('module', ['core', 'data', 'models', 'threats', 'attacks', 'training', 'soups', 'lp_soups', 'shifts', 'learned', 'executor'])
def test_modules_import(module):
    importlib.import_module(f'robust_soups.{module}')


def test_installed_versions_follow_constraints(root):
    from importlib.metadata import version
    for line in (root / 'constraints.txt').read_text().splitlines():
        match = re.fullmatch(r'([A-Za-z0-9_.-]+)==([^\s#]+)', line.strip())
        if match:
            assert version(match[1]).split('+')[0] == match[2], match[1]


def test_test_flags_declared(root):
    assert settings(root)['tst_flags'].split() == ['slow', 'gpu']


def test_readme_has_the_two_quickstart_commands(root):
    readme = (root / 'README.md').read_text()
    block = re.search(r'```sh\n(.*?)```', readme, re.S)
    assert block, 'README needs a ```sh block with the quickstart'
    commands = [line for line in block[1].splitlines() if line.strip() and not line.startswith('#')]
    assert len(commands) == 2
    assert 'constraints.txt' in commands[0] and 'robust_soups run demo' in commands[0]
    assert 'nbdev_test' in commands[1] and 'pytest' in commands[1]


def test_readme_is_generated_from_index(root, tmp_path):
    sys.path.insert(0, str(root / 'tools'))
    from readme import render_readme
    assert render_readme(tmp_path).read_text() == (root / 'README.md').read_text(), \
        'README.md is out of date: run python tools/readme.py after executing nbs/index.ipynb'


def test_gpu_benchmark_skips_cleanly_without_cuda(root):
    "benchmarks/gpu.py says why it measured nothing and exits 0 where there is no CUDA device (CI, the CPU machines)."
    import subprocess
    result = subprocess.run([sys.executable, str(root / 'benchmarks' / 'gpu.py')], capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''})
    assert result.returncode == 0 and 'skipped, no CUDA device here' in result.stdout, result.stderr
