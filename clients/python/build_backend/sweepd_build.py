"""PEP 517 / PEP 660 build backend for the single-module sweepd client, standard library only.

Why not setuptools: pip builds in an isolated environment and would download setuptools there,
and the machines sweepd runs on may have no access to PyPI. This backend needs nothing beyond
Python itself, so `pip install clients/python` (and `pip install -e clients/python`) works
offline, in any virtualenv, with or without `--no-build-isolation`.

Wheels and sdists are reproducible: file times come from $SOURCE_DATE_EPOCH (default 1980-01-01).
"""

import base64
import gzip
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

NAME = "sweepd-client"
MODULE = "sweepd_client"
SUMMARY = "Python client for sweepd, the sweep-run supervisor (standard library only)"
REQUIRES_PYTHON = ">=3.8"

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SDIST_FILES = [
    "pyproject.toml",
    "README.md",
    MODULE + ".py",
    "build_backend/sweepd_build.py",
    "tests/test_sweepd_client.py",
]


def _version():
    with open(os.path.join(_ROOT, MODULE + ".py"), encoding="utf-8") as f:
        match = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if match is None:
        raise RuntimeError("no __version__ in %s.py" % MODULE)
    return match.group(1)


def _dist_name():
    return re.sub(r"[-_.]+", "_", NAME)


def _metadata():
    lines = [
        "Metadata-Version: 2.1",
        "Name: " + NAME,
        "Version: " + _version(),
        "Summary: " + SUMMARY,
        "Requires-Python: " + REQUIRES_PYTHON,
    ]
    readme = os.path.join(_ROOT, "README.md")
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _timestamp():
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # 1980-01-01, zip's earliest
    return max(epoch, 315532800)


def _write_wheel(wheel_directory, files):
    """files: [(archive name, bytes)]; adds the dist-info and returns the wheel's file name."""
    version = _version()
    dist_info = "%s-%s.dist-info" % (_dist_name(), version)
    wheel_meta = "Wheel-Version: 1.0\nGenerator: sweepd_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = list(files) + [
        (dist_info + "/METADATA", _metadata().encode("utf-8")),
        (dist_info + "/WHEEL", wheel_meta.encode("utf-8")),
    ]
    record = []
    for name, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append(dist_info + "/RECORD,,")
    files.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode("utf-8")))

    filename = "%s-%s-py3-none-any.whl" % (_dist_name(), version)
    date = time.gmtime(_timestamp())[:6]
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=date)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return filename


def _read(relpath):
    with open(os.path.join(_ROOT, relpath), "rb") as f:
        return f.read()


# ---- PEP 517 hooks


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [(MODULE + ".py", _read(MODULE + ".py"))])


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660: a .pth file that puts this directory on sys.path."""
    return _write_wheel(wheel_directory, [(MODULE + ".pth", (_ROOT + "\n").encode("utf-8"))])


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (_dist_name(), _version())
    filename = base + ".tar.gz"
    mtime = _timestamp()

    def add(tar, name, data):
        info = tarfile.TarInfo(base + "/" + name)
        info.size = len(data)
        info.mtime = mtime
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))

    path = os.path.join(sdist_directory, filename)
    with gzip.GzipFile(path, "wb", mtime=mtime) as gz, tarfile.open(
        fileobj=gz, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:
        for relpath in _SDIST_FILES:
            if os.path.exists(os.path.join(_ROOT, relpath)):
                add(tar, relpath, _read(relpath))
        add(tar, "PKG-INFO", _metadata().encode("utf-8"))
    return filename
