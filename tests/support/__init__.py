"""Helpers the tests share (importable as `support` through pyproject.toml's pytest pythonpath); no tests here.

paths: the repository and the test images. runs: parameters, results and finished runs without
the engine. fake_engine: a stand-in for engine.transfer. waiting: wait_for. images: awkward
image files and small clips made with Pillow. app: the AppTest set-up. browser: a real server and headless
Chromium. Fixtures live in tests/conftest.py.
"""
