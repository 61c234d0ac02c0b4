"""Training as a user runs it: killed with SIGKILL and resumed, and under torchrun with 2 gloo processes (data in memory or streamed, eager or compiled)."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = '''
import sys, torch
from pathlib import Path
from safetensors.torch import save_file
from robust_soups.core import seed_everything
from robust_soups.data import load_digits_splits
from robust_soups.models import create_model
from robust_soups.threats import threat_models
from robust_soups.training import get_recipe, train

out, n, epochs, norm_layer, with_val = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5] == 'val'
streamed, compiled = 'stream' in sys.argv[6:], 'compile' in sys.argv[6:]

class Items(torch.utils.data.Dataset):  # the same points as a dataset, read item by item by DataLoader workers
    def __init__(self, split): self.split = split
    def __len__(self): return len(self.split)
    def __getitem__(self, i): return self.split.x[i], self.split.y[i]
distributed = 'RANK' in __import__('os').environ
if distributed: torch.distributed.init_process_group('gloo')
digits = load_digits_splits()
seed_everything(0)
model = create_model('small_cnn', in_chans=1, norm_layer=norm_layer)
recipe = get_recipe('digits', epochs=epochs, save_every=2, compile='aot_eager' if compiled else None)
data = Items(digits['train'].head(n)) if streamed else digits['train'].head(n)
result = train(model, data, threat_models('digits')['linf'], recipe, val=digits['val'].head(60) if with_val else None,
               out_dir=out / 'run', show_progress=False, workers=1 if streamed else 0)
if not distributed or torch.distributed.get_rank() == 0:
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(out / 'final.safetensors'))
if distributed: torch.distributed.destroy_process_group()  # gloo can abort at interpreter exit otherwise
'''


def run_script(tmp_path, out, *args, launcher=None):
    script = tmp_path / 'train_script.py'
    script.write_text(SCRIPT)
    command = (launcher or [sys.executable]) + [str(script), str(out), *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]


def weights(path):
    return load_file(str(path))


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path):
    args = (1000, 3, 'batch', 'val')  # 16 steps per epoch, a state every 2 steps
    finish(run_script(tmp_path, tmp_path / 'whole', *args))
    killed = run_script(tmp_path, tmp_path / 'killed', *args)
    state = tmp_path / 'killed' / 'run' / 'state.pt'
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.is_file():
            step = torch.load(state, weights_only=True)['step']
            if step >= 18 and step % 16:  # in the middle of the second epoch
                break
        time.sleep(.02)
    else:
        raise AssertionError('the run never wrote a mid-epoch state')
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / 'killed' / 'final.safetensors').exists(), 'the run finished before it was killed'
    finish(run_script(tmp_path, tmp_path / 'killed', *args))
    whole, resumed = weights(tmp_path / 'whole' / 'final.safetensors'), weights(tmp_path / 'killed' / 'final.safetensors')
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    assert not list((tmp_path / 'killed' / 'run').glob('*.tmp')), 'a partial write was left behind'


def test_ddp_with_two_gloo_processes_matches_one_process(tmp_path):
    torchrun = shutil.which('torchrun') or str(Path(sys.executable).parent / 'torchrun')
    args = (256, 1, 'group', 'noval')  # GroupNorm: per-example statistics, so the shares do not change them
    finish(run_script(tmp_path, tmp_path / 'single', *args))
    finish(run_script(tmp_path, tmp_path / 'ddp', *args, launcher=[torchrun, '--standalone', '--nproc_per_node=2']))
    single, ddp = weights(tmp_path / 'single' / 'final.safetensors'), weights(tmp_path / 'ddp' / 'final.safetensors')
    for key in single:
        assert torch.allclose(single[key], ddp[key], atol=1e-4, rtol=1e-3), (key, (single[key] - ddp[key]).abs().max())  # float32 sums in another order


def test_streamed_ddp_with_two_gloo_processes_matches_one_process_in_memory(tmp_path):
    "Each process streams only its share of every batch through a DataLoader worker; the result is the in-memory run's."
    torchrun = shutil.which('torchrun') or str(Path(sys.executable).parent / 'torchrun')
    args = (256, 1, 'group', 'noval')
    finish(run_script(tmp_path, tmp_path / 'single', *args))
    finish(run_script(tmp_path, tmp_path / 'ddp', *args, 'stream', launcher=[torchrun, '--standalone', '--nproc_per_node=2']))
    single, ddp = weights(tmp_path / 'single' / 'final.safetensors'), weights(tmp_path / 'ddp' / 'final.safetensors')
    for key in single:
        assert torch.allclose(single[key], ddp[key], atol=1e-4, rtol=1e-3), (key, (single[key] - ddp[key]).abs().max())


def test_compiled_ddp_with_two_gloo_processes_matches_one_eager_process(tmp_path):
    "The recipe's torch.compile path under DDP (aot_eager: the compiler's tracing, no code generation) ends where the eager single process does."
    torchrun = shutil.which('torchrun') or str(Path(sys.executable).parent / 'torchrun')
    args = (256, 1, 'group', 'noval')
    finish(run_script(tmp_path, tmp_path / 'single', *args))
    finish(run_script(tmp_path, tmp_path / 'ddp', *args, 'memory', 'compile', launcher=[torchrun, '--standalone', '--nproc_per_node=2']))
    single, ddp = weights(tmp_path / 'single' / 'final.safetensors'), weights(tmp_path / 'ddp' / 'final.safetensors')
    for key in single:
        assert torch.allclose(single[key], ddp[key], atol=1e-4, rtol=1e-3), (key, (single[key] - ddp[key]).abs().max())
