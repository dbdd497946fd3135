"""Build of the optional C speed-ups (everything else is in pyproject.toml).

- ``tap_canvas_data2._transcode``: DAP TSV objects -> Singer RECORD lines (the tap);
- ``target_dap_sql._rows``: RECORD lines -> PostgreSQL COPY / MySQL LOAD DATA rows (the target).

Both are optional: without a C compiler the install still succeeds and the pure-Python
paths run instead (same output, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tap_canvas_data2._transcode",
            ["tap_canvas_data2/_transcode.c"],
            include_dirs=["csrc"],
            depends=["csrc/utf8.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "target_dap_sql._rows",
            ["target_dap_sql/_rows.c"],
            include_dirs=["csrc"],
            depends=["csrc/utf8.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
