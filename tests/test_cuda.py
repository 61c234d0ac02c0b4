"""The CUDA paths: mixed-precision training, soups and attacks on the GPU, and SyncBatchNorm under torchrun.
Skipped where no GPU is present (CI); run them on a GPU machine with `pytest tests/test_cuda.py`."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')

SCRIPT = '''
import os, sys, torch
from pathlib import Path
from safetensors.torch import save_file
from robust_soups.core import seed_everything
from robust_soups.data import load_digits_splits
from robust_soups.models import create_model
from robust_soups.threats import threat_models
from robust_soups.training import get_recipe, train

out = Path(sys.argv[1])
distributed = 'RANK' in os.environ
if distributed: torch.distributed.init_process_group('gloo')  # every process on cuda:0: NCCL refuses two ranks on one GPU
digits = load_digits_splits()
seed_everything(0)
model = create_model('small_cnn', in_chans=1, norm='batch').cuda()
result = train(model, digits['train'].head(256), threat_models('digits')['linf'], get_recipe('digits', epochs=1), show_progress=False)
if not distributed or torch.distributed.get_rank() == 0:
    save_file({k: v.detach().contiguous().cpu() for k, v in result.model.state_dict().items()}, str(out / 'final.safetensors'))
if distributed: torch.distributed.destroy_process_group()
'''


def _digits():
    from robust_soups.data import load_digits_splits
    return load_digits_splits()


def test_amp_training_on_cuda_resumes_and_loads_on_cpu(tmp_path):
    from robust_soups.core import seed_everything
    from robust_soups.models import create_model, load_checkpoint
    from robust_soups.threats import threat_models
    from robust_soups.training import get_recipe, train
    digits = _digits()
    recipe = get_recipe('digits', epochs=2, amp=True, save_every=3)
    seed_everything(0)
    run = lambda stop: train(create_model('small_cnn', in_chans=1).cuda(), digits['train'].head(512), threat_models('digits')['l2'], recipe,
                             val=digits['val'].head(100), out_dir=tmp_path / 'run', show_progress=False, stop_after_steps=stop)
    run(6)
    state = torch.load(tmp_path / 'run' / 'state.pt', weights_only=True)
    assert state['step'] == 6 and state['scaler']['scale'] > 0  # the gradient scaler is live and saved
    result = run(None)
    assert result.history['train_loss'].notna().all() and result.history['val_clean'].iloc[-1] > 50
    model, metadata = load_checkpoint(tmp_path / 'run' / 'best.safetensors', 'cpu')
    x = digits['test'].x[:200]
    with torch.no_grad():
        on_cpu, on_gpu = model(x), result.model.cuda().eval()(x.cuda()).cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-3), (on_cpu - on_gpu).abs().max()


def test_soups_and_attacks_on_cuda_match_the_cpu():
    from robust_soups.attacks import evaluate_robustness
    from robust_soups.models import create_model
    from robust_soups.soups import SoupEvaluator, make_soup, predict_soups
    digits = _digits()
    torch.manual_seed(0)
    ingredients = {name: create_model('small_cnn', in_chans=1) for name in 'abc'}
    grid = [(1., 0., 0.), (.2, .3, .5), (1.4, -.2, -.2)]
    x = digits['test'].x[:128]
    on_cpu = predict_soups(SoupEvaluator(ingredients, create_model('small_cnn', in_chans=1)), grid, x, show_progress=False)
    on_gpu = predict_soups(SoupEvaluator(ingredients, create_model('small_cnn', in_chans=1).cuda()), grid, x.cuda(), show_progress=False)
    assert on_gpu.is_cuda and torch.allclose(on_cpu, on_gpu.cpu(), atol=1e-4)
    soup = make_soup(ingredients, grid[1])
    cpu_table = evaluate_robustness(soup, digits['test'].head(200), 'digits', show_progress=False)
    gpu_table = evaluate_robustness(soup.cuda(), digits['test'].head(200), 'digits', show_progress=False)
    assert (cpu_table - gpu_table).abs().max().max() <= 2.  # float differences can flip a few points


def test_syncbatchnorm_with_two_processes_on_one_gpu_matches_one_process(tmp_path):
    torchrun = shutil.which('torchrun') or str(Path(sys.executable).parent / 'torchrun')
    script = tmp_path / 'train_script.py'
    script.write_text(SCRIPT)
    for name, launcher in (('single', [sys.executable]), ('ddp', [torchrun, '--standalone', '--nproc_per_node=2'])):
        (tmp_path / name).mkdir()
        subprocess.run(launcher + [str(script), str(tmp_path / name)], check=True, timeout=600)
    single, ddp = load_file(str(tmp_path / 'single' / 'final.safetensors')), load_file(str(tmp_path / 'ddp' / 'final.safetensors'))
    for key in single:  # BatchNorm: only global batch statistics (SyncBatchNorm) give the single-process result
        if single[key].is_floating_point():
            assert torch.allclose(single[key], ddp[key], atol=1e-3, rtol=1e-3), (key, (single[key] - ddp[key]).abs().max())
