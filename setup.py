"""mmfastvit: FastViT as an OpenMMLab plugin.

The core (backbone, fusion, latency tools) needs torch and mmengine only; the task integrations need the packages in
requirements/optional.txt (mmcv 2.1.0 with ops is built from source: see README, tools/setup_env.sh).
"""
import re
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def read_requirements(name):
    """Requirement lines of requirements/<name>.txt without comments."""
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [line.split('#')[0].strip() for line in lines if line.split('#')[0].strip()]


class BuildPyWithModelIndex(build_py):
    """Also copies model-index.yml and configs/ into the built package as mmfastvit/.mim/ (where OpenMMLab's packages
    keep theirs), so that model names resolve in a non-editable install; an editable install reads the clone's."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):  # pip install -e: the package reads the clone's files
            return
        mim = Path(self.build_lib) / 'mmfastvit' / '.mim'
        mim.mkdir(parents=True, exist_ok=True)
        shutil.copy2(HERE / 'model-index.yml', mim / 'model-index.yml')
        shutil.copytree(HERE / 'configs', mim / 'configs', dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns('__pycache__'))


version = re.search(r"__version__ = '([^']+)'", (HERE / 'mmfastvit' / '__init__.py').read_text()).group(1)

setup(
    name='mmfastvit',
    version=version,
    description='FastViT (ICCV 2023) backbones, structural reparameterization and deployment for OpenMMLab',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmfastvit', 'mmfastvit.*']),
    python_requires='>=3.8',
    install_requires=['torch>=2.0'] + read_requirements('runtime'),
    extras_require={
        'tasks': read_requirements('optional'),
        'deploy': read_requirements('deploy'),
        'hand': read_requirements('hand'),
        'tests': read_requirements('tests'),
    },
    license='Apache-2.0',
    cmdclass={'build_py': BuildPyWithModelIndex},
)
