"""Build of the optional C accelerator of the Modbus poll (collectors/_fastpoll.c); everything else is in
pyproject.toml. Without a C compiler the install still succeeds and collectors/fastpoll.py falls back to Python."""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collectors._fastpoll",
            ["collectors/_fastpoll.c"],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
