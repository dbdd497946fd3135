"""Build of the optional C speed-up (everything else is in pyproject.toml).

``tap_canvas_data2._transcode`` turns TSV objects into Singer RECORD lines several times
faster than pure Python. It is optional: without a C compiler the install still succeeds
and the tap uses its pure-Python transcoder (same output, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tap_canvas_data2._transcode",
            ["tap_canvas_data2/_transcode.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
