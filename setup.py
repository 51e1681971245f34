import configparser
import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))
# pbr derives the version from git metadata (or PKG-INFO in an sdist) and fails without both,
# e.g. `pip install .` from a copy of the tree or a `git archive` export. There, use the
# version of setup.cfg, as PBR_VERSION would (an explicit PBR_VERSION still wins).
if not any(os.path.exists(os.path.join(HERE, name)) for name in ('.git', 'PKG-INFO')):
    _cfg = configparser.ConfigParser()
    _cfg.read(os.path.join(HERE, 'setup.cfg'))
    os.environ.setdefault('PBR_VERSION', _cfg.get('metadata', 'version'))

setuptools.setup(setup_requires=['pbr>=2.0.0'], pbr=True)
