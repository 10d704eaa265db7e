"""The experiment configs, installed with tljax as ``tljax.configs``.

One file per experiment family, each with ``get_config(arg=None)`` returning
an ``ml_collections.ConfigDict`` (big_vision style): ``digits.py`` (MNIST →
UCI digits, the default of ``tljax train``), ``moons.py`` (rotated two-moons)
and ``unsupervised.py``. The files live in the repository's top-level
``configs/`` directory; packaging maps that directory to ``tljax.configs``
(setup.py), so they are not copied. Pass one by path, from a checkout or from
the installed package: ``tljax train --config configs/moons.py:method=jan``.
"""
