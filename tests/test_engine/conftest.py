"""The engine tests' one T8 training run, shared by the crash-resume, distributed and bad-input tests: the
classification recipe of engine_helpers.CLASSIFIER on the session's tiny ImageNet, 3 epochs of 2 iterations, trained
by tools/train.py in its own process (one thread), as the crash and distributed runs it is compared with."""
import pytest

from engine_helpers import CLASSIFIER, T8_EPOCHS, check, train, write_config
from helpers import build_once


@pytest.fixture(scope='session')
def t8_run(tmp_path_factory, tiny_imagenet):
    """``config`` (the recipe for :data:`T8_EPOCHS` epochs), ``work_dir`` (epoch_1.pth .. epoch_3.pth, losses.jsonl),
    ``log``, and ``data_root``."""
    def build(tmp):
        config = write_config(tmp / 'cls.py', CLASSIFIER, 'fastvit_t8_in1k.py', tiny_imagenet['root'],
                              max_epochs=T8_EPOCHS)
        result = check(train(config, tmp / 'whole', cwd=tmp))
        return dict(tmp=tmp, config=config, work_dir=tmp / 'whole', log=result.stdout + result.stderr,
                    data_root=tiny_imagenet['root'])

    return build_once(tmp_path_factory, 't8_run', build)
