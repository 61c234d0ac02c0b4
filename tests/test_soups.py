"""Soup grids evaluated by 2 gloo processes under torchrun give the logits one process computes."""
import shutil
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = '''
import os, sys, torch
from robust_soups.core import seed_everything
from robust_soups.data import load_digits_splits
from robust_soups.models import create_model
from robust_soups.soups import SoupEvaluator, predict_soups_sharded, simplex_grid
if 'RANK' in os.environ: torch.distributed.init_process_group('gloo')
seed_everything(0)
ingredients = {name: create_model('small_cnn', in_chans=1).eval() for name in 'abc'}
x = load_digits_splits()['test'].x[:50]
logits = predict_soups_sharded(SoupEvaluator(ingredients, create_model('small_cnn', in_chans=1)), simplex_grid(3, .2), x, show_progress=False)
if 'RANK' not in os.environ or torch.distributed.get_rank() == 0: torch.save(logits, sys.argv[1])
if 'RANK' in os.environ: torch.distributed.destroy_process_group()
'''


def test_sharded_grid_matches_one_process(tmp_path):
    script = tmp_path / 'soups_script.py'
    script.write_text(SCRIPT)
    torchrun = shutil.which('torchrun') or str(Path(sys.executable).parent / 'torchrun')
    for name, launcher in [('single', [sys.executable]), ('ddp', [torchrun, '--standalone', '--nproc_per_node=2'])]:
        done = subprocess.run(launcher + [str(script), str(tmp_path / f'{name}.pt')], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    single, sharded = torch.load(tmp_path / 'single.pt'), torch.load(tmp_path / 'ddp.pt')
    assert single.shape == (21, 50, 10)
    assert torch.equal(single, sharded)
