"""Execute notebooks in place so that their outputs are kept, skipping cells flagged with test flags
that are not switched on (as nbdev_test does). A skipped cell keeps the outputs it had, so results of
`#| slow` runs survive a quick re-execution.

    python tools/execute_notebooks.py nbs/03b_attacks.ipynb [more.ipynb ...] [--flags slow gpu]
"""
import argparse
import copy
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FLAG = re.compile(r'^#\|\s*(\w+)\s*$')


def cell_flags(cell) -> set[str]:
    "The directive words at the top of a code cell (`#| slow` gives {'slow'})."
    words = set()
    for line in cell.source.splitlines():
        if not line.startswith('#|'): break
        if m := FLAG.match(line.strip()): words.add(m[1])
    return words


def execute(path: Path, flags: set[str], all_flags: set[str] = frozenset({'slow', 'gpu'}), timeout: int = 3600) -> None:
    "Run `path` top to bottom in its folder and write the outputs of the cells that ran back into it."
    notebook = nbformat.read(path, as_version=4)
    runnable = copy.deepcopy(notebook)
    skipped = []
    for i, cell in enumerate(runnable.cells):
        if cell.cell_type == 'code' and (cell_flags(cell) & all_flags) - flags:
            cell.source, skipped = '', skipped + [i]
    NotebookClient(runnable, timeout=timeout, kernel_name='python3',
                   resources={'metadata': {'path': str(path.parent)}}).execute()
    for i, (cell, ran) in enumerate(zip(notebook.cells, runnable.cells)):
        if cell.cell_type == 'code' and i not in skipped:
            cell.outputs, cell.execution_count = ran.outputs, ran.execution_count
    nbformat.write(notebook, path)
    print(f'{path}: executed, {len(skipped)} flagged cell(s) skipped')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('notebooks', nargs='+', type=Path)
    parser.add_argument('--flags', nargs='*', default=[], help='test flags to switch on (slow, gpu)')
    args = parser.parse_args()
    for nb in args.notebooks: execute(nb, set(args.flags))
