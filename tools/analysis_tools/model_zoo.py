"""mmfastvit's model names, from the model index (model-index.yml, configs/metafiles/*.yml), and the docs checked
against it, so that each published figure is written once, in a metafile.

    python tools/analysis_tools/model_zoo.py                       # the table of names (markdown) on stdout
    python tools/analysis_tools/model_zoo.py --task detection      # one task's names
    python tools/analysis_tools/model_zoo.py --write               # regenerate the table in docs/model_zoo.md
    python tools/analysis_tools/model_zoo.py --check               # every figure in the docs' tables = the metafiles

``--check`` reads the markdown tables of README.md and docs/{classification,detection,segmentation,fmvit}.md. A row
names its model by a config file (``fastvit_t8_in1k.py``, linked or in backticks) or by its variant (``T8``,
``FMViT-T``); the columns below are compared with that model's entry, a number to the precision it is written with,
``-`` meaning "none published". It also checks that docs/model_zoo.md holds the current generated table. Exit
status 1 lists every disagreement.
"""
import argparse
import os.path as osp
import re
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from a clone without installing

from mmfastvit.apis.model_index import TASKS, ModelInfo, model_infos  # noqa: E402

CHECKED_DOCS = ('README.md', 'docs/classification.md', 'docs/detection.md', 'docs/segmentation.md', 'docs/fmvit.md')
ZOO_DOC = 'docs/model_zoo.md'
BEGIN, END = '<!-- model-zoo:begin (tools/analysis_tools/model_zoo.py --write) -->', '<!-- model-zoo:end -->'

# column header -> (what, scale): 'params' / 'flops' from Metadata (compared after dividing by scale, at the cell's
# precision; scale 1 means the exact count), or a metric name of Results (scale None). 'distilled' reads the
# variant's ``_in1k-distill`` entry.
COLUMNS: Dict[str, Tuple[str, Optional[float]]] = {
    'params unfused': ('params', 1),
    'unfused params M': ('params', 1e6),
    'detector params (M), unfused / `deploy=True`': ('params', 1e6),
    'params (M), unfused / `deploy=True`': ('params', 1e6),
    'GFLOPs @256 (paper)': ('flops', 1e9),
    'GFLOPs @256 unfused / fused': ('flops', 1e9),
    'unfused GFLOPs': ('flops', 1e9),
    'total GFLOPs (unfused)': ('flops', 1e9),
    'top-1': ('Top 1 Accuracy', None),
    'paper top-1': ('Top 1 Accuracy', None),
    'top-1 distilled': ('distilled', None),
    'paper box AP': ('box AP', None),
    'paper mask AP': ('mask AP', None),
    'paper mIoU': ('mIoU', None),
}
_NUMBER = re.compile(r'-?[\d,]+(?:\.\d+)?')


def by_config(models: Dict[str, ModelInfo]) -> Dict[str, ModelInfo]:
    """``{config file name: entry}``."""
    return {osp.basename(info.config): info for info in models.values()}


def _row_config(cells: List[str]) -> Optional[str]:
    """The config a table row is about: the first ``*.py`` named in it, else one from its variant cell."""
    found = re.search(r'([A-Za-z0-9_]+\.py)\b', ' '.join(cells))
    if found:
        return found.group(1)
    first = cells[0].strip('`* ')
    if re.fullmatch(r'FMViT-[TSMBL]', first):
        return f'fmvit_{first[-1].lower()}_in1k.py'
    if re.fullmatch(r'(T8|T12|S12|SA12|SA24|SA36|MA36)', first):
        return f'fastvit_{first.lower()}_in1k.py'
    return None


def markdown_tables(text: str) -> Iterator[Tuple[int, List[str], List[Tuple[int, List[str]]]]]:
    """``(header line number, header cells, [(line number, cells), ...])`` of each markdown table in ``text``."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith('|') and i + 1 < len(lines) and re.fullmatch(r'\|( *:?-+:? *\|)+', lines[i + 1]):
            header = [c.strip() for c in lines[i].strip().strip('|').split('|')]
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith('|'):
                rows.append((j + 1, [c.strip() for c in lines[j].strip().strip('|').split('|')]))
                j += 1
            yield i + 1, header, rows
            i = j
        else:
            i += 1


def _expected(info: ModelInfo, what: str, models: Dict[str, ModelInfo]):
    if what in ('params', 'flops'):
        return info.metadata.get('Parameters' if what == 'params' else 'FLOPs')
    if what == 'distilled':
        info = models.get(info.name + '-distill')
        return None if info is None else info.metrics.get('Top 1 Accuracy')
    return info.metrics.get(what)


def _agrees(cell: str, expected, scale: Optional[float]) -> bool:
    found = _NUMBER.search(cell)
    if found is None or cell.strip() in ('-', ''):
        return expected is None
    if expected is None:
        return False
    text = found.group(0).replace(',', '')
    decimals = len(text.split('.')[1]) if '.' in text else 0
    value = float(text)
    if scale is None:
        return round(float(expected), decimals) == value
    if scale == 1:
        return int(value) == int(expected)
    return round(expected / scale, decimals) == value


def check_doc(path: str, models: Dict[str, ModelInfo]) -> Tuple[List[str], int]:
    """The disagreements between the tables of the markdown file ``path`` and ``models``, and the number of cells
    compared."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    configs = by_config(models)
    problems, compared = [], 0
    for _, header, rows in markdown_tables(text):
        columns = [(k, COLUMNS[h]) for k, h in enumerate(header) if h in COLUMNS]
        if not columns:
            continue
        for line, cells in rows:
            info = configs.get(_row_config(cells) or '')
            if info is None:
                continue
            for k, (what, scale) in columns:
                if k >= len(cells):
                    continue
                expected = _expected(info, what, models)
                compared += 1
                if not _agrees(cells[k], expected, scale):
                    problems.append(f'{osp.relpath(path, REPO)}:{line}: "{header[k]}" of {info.name} is "{cells[k]}", '
                                    f'the metafile ({osp.relpath(info.metafile, REPO)}) says '
                                    f'{"none" if expected is None else expected}')
    return problems, compared


def _format_metrics(info: ModelInfo) -> str:
    return ', '.join(f'{k} {v}' for k, v in info.metrics.items()) or '-'


def zoo_table(models: Dict[str, ModelInfo], task: Optional[str] = None) -> str:
    """The markdown table of the names (one row per model, index order)."""
    lines = ['| name | task | params (M) | GFLOPs | published | weights | config |', '|---|---|---|---|---|---|---|']
    for info in models.values():
        if task is not None and info.task != task:
            continue
        params, flops = info.metadata.get('Parameters'), info.metadata.get('FLOPs')
        config = osp.relpath(info.config, REPO)
        lines.append(f'| `{info.name}` | {info.task} | {params / 1e6:.2f} | '
                     f'{"-" if flops is None else f"{flops / 1e9:.2f}"} | {_format_metrics(info)} | '
                     f'{"Apple" if info.weights else "-"} | [{osp.basename(config)}](../{config}) |')
    return '\n'.join(lines)


def _zoo_block(models: Dict[str, ModelInfo]) -> str:
    return f'{BEGIN}\n{zoo_table(models)}\n{END}'


def write_zoo_doc(path: str, models: Dict[str, ModelInfo]) -> bool:
    """Replaces the generated block of ``path``; returns whether the file changed."""
    from mmfastvit.fileio import atomic_write
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise ValueError(f'{path} has no generated block: add the lines\n{BEGIN}\n{END}\nwhere the table goes')
    head, rest = text.split(BEGIN, 1)
    new = head + _zoo_block(models) + rest.split(END, 1)[1]
    if new == text:
        return False
    atomic_write(path, lambda f: f.write(new), mode='w')
    return True


def check_zoo_doc(path: str, models: Dict[str, ModelInfo]) -> List[str]:
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if _zoo_block(models) not in text:
        return [f'{osp.relpath(path, REPO)}: the table of names is not the one the metafiles give; run '
                f'python tools/analysis_tools/model_zoo.py --write']
    return []


def check(docs: Sequence[str] = CHECKED_DOCS, zoo_doc: Optional[str] = ZOO_DOC) -> Tuple[List[str], int]:
    """Checks ``docs`` (paths relative to the repository) and the generated table; ``(problems, cells compared)``."""
    models = model_infos()
    problems, compared = [], 0
    for doc in docs:
        found, n = check_doc(osp.join(REPO, doc), models)
        problems += found
        compared += n
    if zoo_doc:
        problems += check_zoo_doc(osp.join(REPO, zoo_doc), models)
    return problems, compared


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', choices=TASKS, help='list one task\'s models')
    action = parser.add_mutually_exclusive_group()
    action.add_argument('--write', action='store_true', help=f'regenerate the table in {ZOO_DOC}')
    action.add_argument('--check', action='store_true', help='compare the docs\' figures with the metafiles')
    args = parser.parse_args(argv)
    models = model_infos()
    if args.write:
        changed = write_zoo_doc(osp.join(REPO, ZOO_DOC), models)
        print(f'{ZOO_DOC}: {"updated" if changed else "already current"}')
        return 0
    if args.check:
        problems, compared = check()
        for problem in problems:
            print(problem)
        print(f'{compared} figures in {len(CHECKED_DOCS)} files compared with {len(models)} metafile entries; '
              f'{len(problems)} disagreements')
        return 1 if problems else 0
    print(zoo_table(models, args.task))
    return 0


if __name__ == '__main__':
    sys.exit(main())
