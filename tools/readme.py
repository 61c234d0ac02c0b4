"""Generate README.md (and its figures in README_files/) from nbs/index.ipynb with its kept outputs.

nbdev's own `nbdev_readme` needs Quarto, which cannot be installed on the project's machines; nbconvert
renders the same notebook to GitHub markdown. Run after executing nbs/index.ipynb:

    python tools/readme.py
"""
import sys
from pathlib import Path

from nbconvert import MarkdownExporter
from nbconvert.writers import FilesWriter
import nbformat

ROOT = Path(__file__).resolve().parents[1]


def render_readme(out_dir: Path = ROOT) -> Path:
    "Write README.md and README_files/ into `out_dir`; return the README's path."
    notebook = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    notebook.cells = [c for c in notebook.cells if not c.source.lstrip().startswith('#| hide')]
    for cell in notebook.cells:  # directives such as `#| slow` are for nbdev, not for readers
        if cell.cell_type == 'code': cell.source = '\n'.join(l for l in cell.source.splitlines() if not l.startswith('#|'))
    body, resources = MarkdownExporter().from_notebook_node(notebook, resources={'output_files_dir': 'README_files'})
    FilesWriter(build_directory=str(out_dir)).write(body, resources, notebook_name='README')
    return Path(out_dir) / 'README.md'


if __name__ == '__main__':
    print(render_readme(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
