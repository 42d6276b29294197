"""Every notebook in colabs/ runs top to bottom (small settings)."""

import pathlib
import time

import conftest
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.notebook]

REPO = pathlib.Path(conftest.REPO)
NOTEBOOKS = sorted((REPO / 'colabs').glob('*.ipynb'))


def test_the_three_notebooks_are_there():
  assert [p.name for p in NOTEBOOKS] == ['data_and_codecs.ipynb', 'inference.ipynb',
                                         'quickstart.ipynb']


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch, smoke_data_dir):
  nbclient = pytest.importorskip('nbclient')
  nbformat = pytest.importorskip('nbformat')
  notebook = nbformat.read(path, as_version=4)
  # Committed without outputs, so that diffs stay readable.
  assert all(not cell.get('outputs') for cell in notebook.cells
             if cell.cell_type == 'code')
  monkeypatch.setenv('POSEJAX_NOTEBOOK_SMALL', '1')
  monkeypatch.setenv('POSEJAX_ROOT', str(REPO))
  monkeypatch.setenv('TFDS_DATA_DIR', smoke_data_dir)
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('POSEJAX_KEEP_MALLOC', '1')
  start = time.perf_counter()
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': str(tmp_path)}}).execute()
  print(f'{path.name}: {time.perf_counter() - start:.1f} s')
  errors = [o for cell in notebook.cells for o in cell.get('outputs', [])
            if o.get('output_type') == 'error']
  assert not errors
