"""Build of the optional C speed-ups (everything else is in pyproject.toml).

- ``tap_canvas_data2._transcode``: DAP TSV objects -> Singer RECORD lines (the tap);
- ``target_dap_sql._rows``: RECORD lines -> PostgreSQL COPY / MySQL LOAD DATA rows (the target).

Both are optional: without a C compiler the install still succeeds and the pure-Python
paths run instead (same output, slower).
"""

from setuptools import Extension, setup


def _speedup(module: str) -> Extension:
    """An optional C extension ``package._name`` built from ``package/_name.c``."""
    return Extension(module, [module.replace(".", "/") + ".c"], include_dirs=["csrc"],
                     depends=["csrc/buf.h", "csrc/jsonnum.h", "csrc/utf8.h"], optional=True,
                     extra_compile_args=["-O2"])


setup(ext_modules=[_speedup("tap_canvas_data2._transcode"), _speedup("target_dap_sql._rows")])
