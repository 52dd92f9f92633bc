"""Build script: metadata lives in pyproject.toml; this file is where compiled extensions join."""

from setuptools import setup

setup()
