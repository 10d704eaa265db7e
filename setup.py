"""Which packages the tljax distribution holds; everything else is pyproject.toml.

The repository's top-level ``configs/`` directory ships inside the package as
``tljax.configs`` (a package-dir mapping, not a copy), so the ``tljax``
command finds its default configs in any install. pyproject.toml's
``packages.find`` cannot add a package that lives outside ``tljax/``, hence
this file.
"""

import setuptools

setuptools.setup(
    packages=setuptools.find_packages(include=["tljax", "tljax.*"])
    + ["tljax.configs"],
    package_dir={"tljax.configs": "configs"},
)
